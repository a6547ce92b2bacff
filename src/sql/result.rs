//! The row a request's main statement ends with: one declaration that `sql` writes and
//! `db` reads, instead of column positions each side assumes.

/// The columns of the one row a read, write or call statement returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowShape {
    /// total (int8, NULL unless counted exactly), page_total (int8), body,
    /// response_headers, response_status (text).
    Rows,
    /// As `Rows`, with the number of rows an upsert inserted (int8, NULL unless tracked)
    /// between page_total and body.
    Written,
    /// As `Rows`, with one row per item of a JSON array: its text instead of the body
    /// (NULL in the one row of an empty page). The body is the items joined as json_agg
    /// joins them ([`ITEMS_OPEN`], [`ITEMS_SEPARATOR`], [`ITEMS_CLOSE`]).
    Items,
}

/// How a streamed read's items make its body: byte for byte what json_agg writes.
pub const ITEMS_OPEN: &[u8] = b"[";
pub const ITEMS_SEPARATOR: &[u8] = b", \n ";
pub const ITEMS_CLOSE: &[u8] = b"]";

/// The last two columns of every shape: what SQL set through response.headers and
/// response.status.
pub const RESPONSE_GUCS: &str = "nullif(current_setting('response.headers', true), ''), \
     nullif(current_setting('response.status', true), '')";

impl RowShape {
    pub const TOTAL: usize = 0;
    pub const PAGE_TOTAL: usize = 1;

    /// The column of the rows an upsert inserted.
    pub fn inserted(self) -> Option<usize> {
        match self {
            RowShape::Rows | RowShape::Items => None,
            RowShape::Written => Some(2),
        }
    }

    pub fn body(self) -> usize {
        match self {
            RowShape::Rows | RowShape::Items => 2,
            RowShape::Written => 3,
        }
    }

    pub fn response_headers(self) -> usize {
        self.body() + 1
    }

    pub fn response_status(self) -> usize {
        self.body() + 2
    }
}
