//! PostgREST's query-string grammar: select, filters, logic trees, order, limit/offset.
//! Hand-written recursive descent over characters so errors can name the exact column the
//! way PostgREST's parser does (`"failed to parse order (x)" (line 1, column 3)`).

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
pub enum JsonKey {
    Key(String),
    Index(i64),
}

/// One `->` or `->>` step of a JSON path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonStep {
    /// `->>` (text result) rather than `->`.
    pub as_text: bool,
    pub key: JsonKey,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub json_path: Vec<JsonStep>,
}

impl Field {
    /// The key the value gets in the output: the last JSON key of the path, or the name.
    pub fn output_name(&self) -> &str {
        self.json_path
            .iter()
            .rev()
            .find_map(|s| match &s.key {
                JsonKey::Key(k) => Some(k.as_str()),
                JsonKey::Index(_) => None,
            })
            .unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Sum,
    Avg,
    Min,
    Max,
    Count,
}

impl AggFunc {
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::Sum => "sum",
            AggFunc::Avg => "avg",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Count => "count",
        }
    }
}

/// `.sum()` etc. after a field, with an optional cast of the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub func: AggFunc,
    pub cast: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JoinType {
    Inner,
    Left,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    Star,
    /// A column (or `*` for `count()`), with an optional cast applied before the
    /// aggregate and an optional aggregate.
    Column {
        field: Field,
        alias: Option<String>,
        cast: Option<String>,
        aggregate: Option<Aggregate>,
    },
    Embed {
        name: String,
        alias: Option<String>,
        hint: Option<String>,
        join: Option<JoinType>,
        spread: bool,
        items: Vec<SelectItem>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    Match,
    Imatch,
    Cs,
    Cd,
    Ov,
    Sl,
    Sr,
    Nxr,
    Nxl,
    Adj,
    IsDistinct,
}

impl CompareOp {
    fn from_name(name: &str) -> Option<CompareOp> {
        use CompareOp::*;
        Some(match name {
            "eq" => Eq,
            "neq" => Neq,
            "gt" => Gt,
            "gte" => Gte,
            "lt" => Lt,
            "lte" => Lte,
            "like" => Like,
            "ilike" => Ilike,
            "match" => Match,
            "imatch" => Imatch,
            "cs" => Cs,
            "cd" => Cd,
            "ov" => Ov,
            "sl" => Sl,
            "sr" => Sr,
            "nxr" => Nxr,
            "nxl" => Nxl,
            "adj" => Adj,
            "isdistinct" => IsDistinct,
            _ => return None,
        })
    }

    pub fn sql(self) -> &'static str {
        use CompareOp::*;
        match self {
            Eq => "=",
            Neq => "<>",
            Gt => ">",
            Gte => ">=",
            Lt => "<",
            Lte => "<=",
            Like => "LIKE",
            Ilike => "ILIKE",
            Match => "~",
            Imatch => "~*",
            Cs => "@>",
            Cd => "<@",
            Ov => "&&",
            Sl => "<<",
            Sr => ">>",
            Nxr => "&<",
            Nxl => "&>",
            Adj => "-|-",
            IsDistinct => "IS DISTINCT FROM",
        }
    }

    fn allows_quantifier(self) -> bool {
        use CompareOp::*;
        matches!(
            self,
            Eq | Gt | Gte | Lt | Lte | Like | Ilike | Match | Imatch
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    Any,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsValue {
    Null,
    NotNull,
    True,
    False,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtsKind {
    Fts,
    Plain,
    Phrase,
    Websearch,
}

impl FtsKind {
    pub fn function(self) -> &'static str {
        match self {
            FtsKind::Fts => "to_tsquery",
            FtsKind::Plain => "plainto_tsquery",
            FtsKind::Phrase => "phraseto_tsquery",
            FtsKind::Websearch => "websearch_to_tsquery",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Compare {
        op: CompareOp,
        quantifier: Option<Quantifier>,
        value: String,
    },
    In(Vec<String>),
    Is(IsValue),
    Fts {
        kind: FtsKind,
        language: Option<String>,
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: Field,
    pub negated: bool,
    pub operation: Operation,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LogicTree {
    Expr {
        negated: bool,
        /// true = OR, false = AND
        or: bool,
        children: Vec<LogicTree>,
    },
    Filter(Filter),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    First,
    Last,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderTerm {
    /// `Some(rel)` for `rel(col)` (ordering by a to-one embed's column).
    pub relation: Option<String>,
    pub field: Field,
    pub direction: Option<Direction>,
    pub nulls: Option<Nulls>,
}

/// Character cursor producing PostgREST-style parse errors.
struct Cursor<'a> {
    what: &'a str,
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
    /// Added to the column in messages (logic trees are parsed as `key` + value).
    offset: usize,
    /// Show the unexpected character as 'c' rather than "c" (PostgREST's order parser).
    char_style: bool,
    /// How many embeds or logic trees enclose the position.
    depth: usize,
}

/// The deepest nesting of embeds (spreads included) or of logic trees a request may
/// use, and the longest JSON path. Real requests use a handful of levels; without a bound
/// a 12 KB query string of `or=(or(or(...` drove the recursive parser, planner and SQL
/// renderer through the stack (about 2,100 levels overflowed a 2 MiB worker stack).
pub const MAX_NESTING: usize = 64;

const FIELD_EXPECT: &str = "field name (* or [a..z0..9_$])";

impl<'a> Cursor<'a> {
    fn new(what: &'a str, input: &'a str) -> Self {
        Cursor {
            what,
            input,
            chars: input.chars().collect(),
            pos: 0,
            offset: 0,
            char_style: false,
            depth: 0,
        }
    }

    /// Enters an embed or a logic tree, refusing to go deeper than [`MAX_NESTING`].
    fn descend(&mut self, what: &str) -> Result<(), ApiError> {
        if self.depth >= MAX_NESTING {
            return Err(self.too_deep(what));
        }
        self.depth += 1;
        Ok(())
    }

    fn ascend(&mut self) {
        self.depth -= 1;
    }

    fn too_deep(&self, what: &str) -> ApiError {
        ApiError::parse(
            self.what,
            self.input,
            self.offset + self.pos + 1,
            format!("{what} nested deeper than {MAX_NESTING} levels (the limit)"),
        )
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.starts_with(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(' ') {
            self.pos += 1;
        }
    }

    fn error(&self, expecting: &str) -> ApiError {
        let unexpected = match self.peek() {
            Some(c) if self.char_style => format!("unexpected '{c}'"),
            Some(c) => format!("unexpected {:?}", c.to_string()),
            None => "unexpected end of input".to_string(),
        };
        ApiError::parse(
            self.what,
            self.input,
            self.offset + self.pos + 1,
            format!("{unexpected} expecting {expecting}"),
        )
    }

    fn expect(&mut self, s: &str) -> Result<(), ApiError> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(self.error(&format!("{s:?}")))
        }
    }

    fn expect_end(&mut self) -> Result<(), ApiError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error("end of input"))
        }
    }

    /// A double-quoted string; `\"` and `\\` escape.
    fn quoted(&mut self) -> Result<String, ApiError> {
        self.expect("\"")?;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("closing quote '\"'")),
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') if self.peek_at(1).is_some() => {
                    out.push(self.chars[self.pos + 1]);
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn is_name_char(&self, c: char) -> bool {
        c.is_alphanumeric()
            || c == '_'
            || c == '$'
            || c == ' '
            || (c == '-' && self.peek_at(1) != Some('>'))
    }

    /// A field or relation name: quoted, or letters, digits, `_`, `$`, space and `-`.
    fn name(&mut self) -> Result<String, ApiError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !self.is_name_char(c) {
                break;
            }
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        let trimmed = name.trim();
        if trimmed.is_empty() {
            self.pos = start;
            return Err(self.error(FIELD_EXPECT));
        }
        Ok(trimmed.to_string())
    }

    fn json_path(&mut self) -> Result<Vec<JsonStep>, ApiError> {
        let mut path = Vec::new();
        loop {
            let as_text = if self.eat("->>") {
                true
            } else if self.eat("->") {
                false
            } else {
                return Ok(path);
            };
            // `a->>b->c` parses, as in PostgREST: PostgreSQL then says that text has no
            // `->` operator.
            if path.len() >= MAX_NESTING {
                return Err(self.too_deep("json path"));
            }
            let key = self.json_key()?;
            path.push(JsonStep { as_text, key });
        }
    }

    fn json_key(&mut self) -> Result<JsonKey, ApiError> {
        let start = self.pos;
        let negative = self.eat("-");
        let digits_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos > digits_start {
            let ends_here = match self.peek() {
                None => true,
                Some(c) => matches!(c, ',' | ')' | '.' | ':' | '-' | '!'),
            };
            if ends_here {
                let text: String = self.chars[start..self.pos].iter().collect();
                return text
                    .parse()
                    .map(JsonKey::Index)
                    .map_err(|_| self.error("a valid array index"));
            }
        }
        self.pos = start;
        if negative && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            return Err(self.error("digit"));
        }
        self.json_key_name().map(JsonKey::Key)
    }

    /// A JSON key: quoted, or any characters but `(`, `)`, `:`, `.`, `,`, `>` and an
    /// arrow's `-`, trimmed (PostgREST's grammar: `->>!@#$%^&*_a` is a key).
    fn json_key_name(&mut self) -> Result<String, ApiError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            let arrow = c == '-' && self.peek_at(1) == Some('>');
            if arrow || matches!(c, '(' | ')' | ':' | '.' | ',' | '>') {
                break;
            }
            self.pos += 1;
        }
        let key: String = self.chars[start..self.pos].iter().collect();
        let key = key.trim();
        if key.is_empty() {
            self.pos = start;
            return Err(self.error("any non reserved character different from: .,>()"));
        }
        Ok(key.to_string())
    }

    fn field(&mut self) -> Result<Field, ApiError> {
        let name = self.name()?;
        let json_path = self.json_path()?;
        Ok(Field { name, json_path })
    }
}

/// `select=...`
pub fn parse_select(input: &str) -> Result<Vec<SelectItem>, ApiError> {
    if input.trim().is_empty() {
        return Ok(vec![SelectItem::Star]);
    }
    let mut c = Cursor::new("select parameter", input);
    // Like PostgREST, input after a complete list is ignored.
    select_list(&mut c)
}

fn select_list(c: &mut Cursor) -> Result<Vec<SelectItem>, ApiError> {
    let mut items = Vec::new();
    loop {
        c.skip_spaces();
        items.push(select_item(c)?);
        c.skip_spaces();
        if !c.eat(",") {
            return Ok(items);
        }
    }
}

/// `sum()`, `avg()`, `min()`, `max()` or `count()` after a column, with its cast.
fn aggregate(c: &mut Cursor) -> Result<Aggregate, ApiError> {
    let start = c.pos;
    while c.peek().is_some_and(|ch| ch.is_ascii_lowercase()) {
        c.pos += 1;
    }
    let word: String = c.chars[start..c.pos].iter().collect();
    let func = match word.as_str() {
        "sum" => AggFunc::Sum,
        "avg" => AggFunc::Avg,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        "count" => AggFunc::Count,
        _ => {
            c.pos = start;
            return Err(c.error("aggregate function (sum, avg, min, max, count)"));
        }
    };
    c.expect("()")?;
    Ok(Aggregate {
        func,
        cast: cast(c)?,
    })
}

fn select_item(c: &mut Cursor) -> Result<SelectItem, ApiError> {
    if c.eat("*") {
        return Ok(SelectItem::Star);
    }
    if c.eat("...") {
        let name = c.name()?;
        return embed(c, name, None, true);
    }
    let first = c.name()?;
    let (alias, name) = if c.peek() == Some(':') && c.peek_at(1) != Some(':') {
        c.pos += 1;
        c.skip_spaces();
        (Some(first), c.name()?)
    } else {
        (None, first)
    };
    if name == "count" && c.starts_with("()") {
        c.pos += 2;
        return Ok(SelectItem::Column {
            field: Field {
                name: "*".into(),
                json_path: Vec::new(),
            },
            alias,
            cast: None,
            aggregate: Some(Aggregate {
                func: AggFunc::Count,
                cast: cast(c)?,
            }),
        });
    }
    if matches!(c.peek(), Some('(') | Some('!')) {
        return embed(c, name, alias, false);
    }
    let json_path = c.json_path()?;
    let input_cast = cast(c)?;
    let aggregate = if c.eat(".") {
        Some(aggregate(c)?)
    } else {
        None
    };
    Ok(SelectItem::Column {
        field: Field { name, json_path },
        alias,
        cast: input_cast,
        aggregate,
    })
}

/// An optional `::type`.
fn cast(c: &mut Cursor) -> Result<Option<String>, ApiError> {
    if !c.eat("::") {
        return Ok(None);
    }
    let start = c.pos;
    while c
        .peek()
        .is_some_and(|ch| ch.is_alphanumeric() || ch == '_' || ch == ' ')
    {
        c.pos += 1;
    }
    let cast: String = c.chars[start..c.pos].iter().collect();
    let cast = cast.trim().to_string();
    if cast.is_empty() {
        return Err(c.error("type name"));
    }
    Ok(Some(cast))
}

fn embed(
    c: &mut Cursor,
    name: String,
    alias: Option<String>,
    spread: bool,
) -> Result<SelectItem, ApiError> {
    let mut hint = None;
    let mut join = None;
    while c.eat("!") {
        let word = c.name()?;
        match word.as_str() {
            "inner" => join = Some(JoinType::Inner),
            "left" => join = Some(JoinType::Left),
            _ => hint = Some(word),
        }
    }
    c.expect("(")?;
    c.descend("embedded resources")?;
    c.skip_spaces();
    let items = if c.peek() == Some(')') {
        Vec::new()
    } else {
        select_list(c)?
    };
    c.skip_spaces();
    c.expect(")")?;
    c.ascend();
    Ok(SelectItem::Embed {
        name,
        alias,
        hint,
        join,
        spread,
        items,
    })
}

/// `order=...`
pub fn parse_order(input: &str) -> Result<Vec<OrderTerm>, ApiError> {
    let mut c = Cursor::new("order", input);
    c.char_style = true;
    let mut terms = Vec::new();
    loop {
        c.skip_spaces();
        terms.push(order_term(&mut c)?);
        c.skip_spaces();
        if c.at_end() {
            return Ok(terms);
        }
        if !c.eat(",") {
            return Err(c.error("\",\" or end of input"));
        }
    }
}

fn order_term(c: &mut Cursor) -> Result<OrderTerm, ApiError> {
    let first = c.field()?;
    let (relation, field) = if first.json_path.is_empty() && c.eat("(") {
        let field = c.field()?;
        c.expect(")")?;
        (Some(first.name), field)
    } else {
        (None, first)
    };
    let mut term = OrderTerm {
        relation,
        field,
        direction: None,
        nulls: None,
    };
    if c.eat(".") {
        if c.eat("asc") {
            term.direction = Some(Direction::Asc);
        } else if c.eat("desc") {
            term.direction = Some(Direction::Desc);
        }
        if term.direction.is_none() || c.eat(".") {
            if c.eat("nullsfirst") {
                term.nulls = Some(Nulls::First);
            } else if c.eat("nullslast") {
                term.nulls = Some(Nulls::Last);
            } else if term.direction.is_none() {
                return Err(c.error("\"asc\", \"desc\", \"nullsfirst\" or \"nullslast\""));
            } else {
                return Err(c.error("\"nullsfirst\" or \"nullslast\""));
            }
        }
    }
    Ok(term)
}

/// A filter's right-hand side, `[not.]op[(modifier)].value`.
pub fn parse_filter_value(field: Field, input: &str) -> Result<Filter, ApiError> {
    let mut c = Cursor::new("filter", input);
    let filter = operation(&mut c, field, None)?;
    Ok(filter)
}

/// Parses an operation; `stop` (inside logic trees) ends a plain value at `,` or `)`.
fn operation(c: &mut Cursor, field: Field, stop: Option<()>) -> Result<Filter, ApiError> {
    let negated = c.eat("not.");
    let start = c.pos;
    while c.peek().is_some_and(|ch| ch.is_ascii_lowercase()) {
        c.pos += 1;
    }
    let op_name: String = c.chars[start..c.pos].iter().collect();
    let operation = match op_name.as_str() {
        "in" => {
            c.expect(".")?;
            Operation::In(list_value(c)?)
        }
        "is" => {
            c.expect(".")?;
            Operation::Is(is_value(c)?)
        }
        "fts" | "plfts" | "phfts" | "wfts" => fts_operation(c, &op_name, stop)?,
        name => match CompareOp::from_name(name) {
            Some(op) => compare_operation(c, op, stop)?,
            None => {
                c.pos = start;
                return Err(if negated {
                    c.error("operator (eq, gt, ...)")
                } else {
                    c.error("\"not\" or operator (eq, gt, ...)")
                });
            }
        },
    };
    Ok(Filter {
        field,
        negated,
        operation,
    })
}

/// The rest of the input as a value, or up to `,`/`)` inside a logic tree.
fn plain_value(c: &mut Cursor, stop: Option<()>) -> Result<String, ApiError> {
    match stop {
        None => {
            let v: String = c.chars[c.pos..].iter().collect();
            c.pos = c.chars.len();
            Ok(v)
        }
        Some(()) => tree_value(c),
    }
}

/// `is.` takes null, not_null or a trilean, in any case.
fn is_value(c: &mut Cursor) -> Result<IsValue, ApiError> {
    let start = c.pos;
    while c
        .peek()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
    {
        c.pos += 1;
    }
    let word: String = c.chars[start..c.pos].iter().collect();
    Ok(match word.to_ascii_lowercase().as_str() {
        "null" => IsValue::Null,
        "not_null" => IsValue::NotNull,
        "true" => IsValue::True,
        "false" => IsValue::False,
        "unknown" => IsValue::Unknown,
        _ => {
            c.pos = start;
            return Err(c.error("null or trilean value (unknown, true, false)"));
        }
    })
}

/// `fts[(language)].query` and its plain, phrase and websearch variants.
fn fts_operation(c: &mut Cursor, op_name: &str, stop: Option<()>) -> Result<Operation, ApiError> {
    let kind = match op_name {
        "fts" => FtsKind::Fts,
        "plfts" => FtsKind::Plain,
        "phfts" => FtsKind::Phrase,
        _ => FtsKind::Websearch,
    };
    let language = if c.eat("(") {
        let start = c.pos;
        while c.peek().is_some_and(|ch| ch != ')') {
            c.pos += 1;
        }
        let lang: String = c.chars[start..c.pos].iter().collect();
        c.expect(")")?;
        Some(lang)
    } else {
        None
    };
    c.expect(".")?;
    Ok(Operation::Fts {
        kind,
        language,
        value: plain_value(c, stop)?,
    })
}

/// `op[(any|all)].value`.
fn compare_operation(
    c: &mut Cursor,
    op: CompareOp,
    stop: Option<()>,
) -> Result<Operation, ApiError> {
    let quantifier = if c.peek() == Some('(') && op.allows_quantifier() {
        c.pos += 1;
        let q = if c.eat("any") {
            Quantifier::Any
        } else if c.eat("all") {
            Quantifier::All
        } else {
            return Err(c.error("\"any\" or \"all\""));
        };
        c.expect(")")?;
        Some(q)
    } else {
        None
    };
    c.expect(".")?;
    Ok(Operation::Compare {
        op,
        quantifier,
        value: plain_value(c, stop)?,
    })
}

/// `(a,"b,c",d)`: elements may be double-quoted (a backslash escapes any character);
/// leading spaces are skipped; a quote that does not close before `,`/`)` is literal.
fn list_value(c: &mut Cursor) -> Result<Vec<String>, ApiError> {
    c.expect("(")?;
    let mut items = Vec::new();
    loop {
        c.skip_spaces();
        let start = c.pos;
        let quoted = if c.peek() == Some('"') {
            match c.quoted() {
                Ok(v) => {
                    c.skip_spaces();
                    matches!(c.peek(), Some(',') | Some(')')).then_some(v)
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let item = match quoted {
            Some(v) => v,
            None => {
                c.pos = start;
                while c.peek().is_some_and(|ch| ch != ',' && ch != ')') {
                    c.pos += 1;
                }
                c.chars[start..c.pos].iter().collect::<String>()
            }
        };
        items.push(item);
        if c.eat(",") {
            continue;
        }
        c.expect(")")?;
        break;
    }
    // `in.()` (nothing or only spaces inside) is the empty list.
    if items == [""] {
        items.clear();
    }
    Ok(items)
}

/// A value inside a logic tree: quoted, a `{...}` array literal, or up to `,`/`)`.
fn tree_value(c: &mut Cursor) -> Result<String, ApiError> {
    if c.peek() == Some('"') {
        return c.quoted();
    }
    let start = c.pos;
    if c.peek() == Some('{') {
        while c.peek().is_some_and(|ch| ch != '}') {
            c.pos += 1;
        }
        if c.eat("}") {
            return Ok(c.chars[start..c.pos].iter().collect());
        }
        c.pos = start;
    }
    while c.peek().is_some_and(|ch| ch != ',' && ch != ')') {
        c.pos += 1;
    }
    Ok(c.chars[start..c.pos].iter().collect())
}

/// `or=(...)`/`and=(...)`; `key` is the last segment of the parameter name
/// (`or`, `and`, `not.or`, `not.and`).
pub fn parse_logic(key: &str, input: &str) -> Result<LogicTree, ApiError> {
    let (negated, name) = match key.strip_prefix("not.") {
        Some(rest) => (true, rest),
        None => (false, key),
    };
    let mut c = Cursor::new("logic tree", input);
    c.offset = name.len();
    // Like PostgREST, input after the closing parenthesis is ignored.
    let children = logic_children(&mut c)?;
    Ok(LogicTree::Expr {
        negated,
        or: name == "or",
        children,
    })
}

fn logic_children(c: &mut Cursor) -> Result<Vec<LogicTree>, ApiError> {
    c.expect("(")?;
    c.descend("logic trees")?;
    let mut children = Vec::new();
    loop {
        c.skip_spaces();
        children.push(logic_item(c)?);
        c.skip_spaces();
        if c.eat(",") {
            continue;
        }
        c.expect(")")?;
        c.ascend();
        return Ok(children);
    }
}

fn logic_item(c: &mut Cursor) -> Result<LogicTree, ApiError> {
    let save = c.pos;
    let negated = c.eat("not.");
    for (word, or) in [("or", true), ("and", false)] {
        let after_word = c.pos;
        if c.eat(word) {
            c.skip_spaces();
            if c.peek() != Some('(') {
                c.pos = after_word;
                continue;
            }
            let children = logic_children(c)?;
            return Ok(LogicTree::Expr {
                negated,
                or,
                children,
            });
        }
    }
    c.pos = save;
    if !c.peek().is_some_and(|ch| c.is_name_char(ch) || ch == '"') || c.peek() == Some(' ') {
        return Err(c.error(&format!(
            "{FIELD_EXPECT}, negation operator (not) or logic operator (and, or)"
        )));
    }
    let field = c.field()?;
    c.expect(".")?;
    Ok(LogicTree::Filter(operation(c, field, Some(()))?))
}

/// Splits a parameter key like `actors.roles.first_name->x` into the embed path and the
/// last segment, respecting double quotes.
pub fn split_key(key: &str) -> (Vec<String>, String) {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut in_json = false;
    let chars: Vec<char> = key.chars().collect();
    for (i, &ch) in chars.iter().enumerate() {
        match ch {
            '"' => {
                in_quotes = !in_quotes;
                current.push(ch);
            }
            '-' if !in_quotes && chars.get(i + 1) == Some(&'>') => {
                in_json = true;
                current.push(ch);
            }
            '.' if !in_quotes && !in_json => parts.push(std::mem::take(&mut current)),
            _ => current.push(ch),
        }
    }
    parts.push(current);
    let last = parts.pop().unwrap_or_default();
    (parts, last)
}

/// A filter key's field: name plus JSON path.
pub fn parse_field(input: &str) -> Result<Field, ApiError> {
    let mut c = Cursor::new("filter", input);
    let field = c.field()?;
    c.expect_end()?;
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> SelectItem {
        SelectItem::Column {
            field: Field {
                name: name.into(),
                json_path: vec![],
            },
            alias: None,
            cast: None,
            aggregate: None,
        }
    }

    #[test]
    fn select_forms() {
        assert_eq!(parse_select("").unwrap(), vec![SelectItem::Star]);
        assert_eq!(parse_select("a, b").unwrap(), vec![col("a"), col("b")]);
        let items = parse_select("x:data->a->>b::text,\"a.b\",arr->0").unwrap();
        assert_eq!(
            items[0],
            SelectItem::Column {
                field: Field {
                    name: "data".into(),
                    json_path: vec![
                        JsonStep {
                            as_text: false,
                            key: JsonKey::Key("a".into())
                        },
                        JsonStep {
                            as_text: true,
                            key: JsonKey::Key("b".into())
                        }
                    ]
                },
                alias: Some("x".into()),
                cast: Some("text".into()),
                aggregate: None,
            }
        );
        assert_eq!(items[1], col("a.b"));
        match &items[2] {
            SelectItem::Column { field, .. } => {
                assert_eq!(field.json_path[0].key, JsonKey::Index(0));
                assert_eq!(field.output_name(), "arr");
            }
            other => panic!("{other:?}"),
        }
        match &parse_select("id,d:directors!fk!inner(*)").unwrap()[1] {
            SelectItem::Embed {
                name,
                alias,
                hint,
                join,
                ..
            } => {
                assert_eq!(name, "directors");
                assert_eq!(alias.as_deref(), Some("d"));
                assert_eq!(hint.as_deref(), Some("fk"));
                assert_eq!(*join, Some(JoinType::Inner));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_keys_as_postgrest_reads_them() {
        let path = |select: &str| match parse_select(select).unwrap().remove(0) {
            SelectItem::Column { field, .. } => field.json_path,
            other => panic!("{other:?}"),
        };
        let key = |k: &str, as_text| JsonStep {
            as_text,
            key: JsonKey::Key(k.into()),
        };
        // `->>` may be followed by `->`: PostgreSQL, not the parser, refuses text -> key.
        assert_eq!(path("data->>a->b"), vec![key("a", true), key("b", false)]);
        assert_eq!(path("data->>!@#$%^&*_a"), vec![key("!@#$%^&*_a", true)]);
        assert_eq!(
            path("data->a-b->c"),
            vec![key("a-b", false), key("c", false)]
        );
        assert_eq!(path("data->\"a.b\""), vec![key("a.b", false)]);
    }

    #[test]
    fn select_errors() {
        assert!(matches!(parse_select("a,"), Err(ApiError::Parse { .. })));
        assert!(matches!(parse_select("a,("), Err(ApiError::Parse { .. })));
        assert!(matches!(
            parse_select("data->"),
            Err(ApiError::Parse { .. })
        ));
        // PostgREST ignores what follows a complete list (its spec sends `...(cost)))`).
        assert_eq!(parse_select("a)").unwrap().len(), 1);
    }

    #[test]
    fn filter_forms() {
        let f = |v: &str| parse_filter_value(parse_field("c").unwrap(), v);
        assert_eq!(
            f("not.eq.5").unwrap().operation,
            Operation::Compare {
                op: CompareOp::Eq,
                quantifier: None,
                value: "5".into()
            }
        );
        assert!(f("not.eq.5").unwrap().negated);
        assert_eq!(
            f("in.(1,\"a,b\",c)").unwrap().operation,
            Operation::In(vec!["1".into(), "a,b".into(), "c".into()])
        );
        assert_eq!(f("in.()").unwrap().operation, Operation::In(vec![]));
        assert_eq!(f("in.( )").unwrap().operation, Operation::In(vec![]));
        assert_eq!(
            f("is.NULL").unwrap().operation,
            Operation::Is(IsValue::Null)
        );
        assert!(f("is.nothing").is_err());
        assert_eq!(
            f("like(any).{a*,b*}").unwrap().operation,
            Operation::Compare {
                op: CompareOp::Like,
                quantifier: Some(Quantifier::Any),
                value: "{a*,b*}".into()
            }
        );
        assert!(f("cs(any).{1}").is_err());
        assert_eq!(
            f("fts(english).cat").unwrap().operation,
            Operation::Fts {
                kind: FtsKind::Fts,
                language: Some("english".into()),
                value: "cat".into()
            }
        );
        assert_eq!(
            f("0").unwrap_err().body(false)["message"],
            "\"failed to parse filter (0)\" (line 1, column 1)"
        );
        assert_eq!(
            f("eq.").unwrap().operation,
            Operation::Compare {
                op: CompareOp::Eq,
                quantifier: None,
                value: "".into()
            }
        );
    }

    #[test]
    fn lists_and_whitespace() {
        let f = |v: &str| {
            parse_filter_value(parse_field("c").unwrap(), v)
                .unwrap()
                .operation
        };
        assert_eq!(
            f("in.( ,3,4)"),
            Operation::In(vec!["".into(), "3".into(), "4".into()])
        );
        assert_eq!(f("in.(\")"), Operation::In(vec!["\"".into()]));
        assert_eq!(f("in.(\"D\\a\\vid\")"), Operation::In(vec!["David".into()]));
        assert!(parse_logic(
            "and",
            "( and ( id.in.( 1, 2, 3 ) , id.eq.3 ) , or ( id.eq.2 , id.eq.3 ) )"
        )
        .is_ok());
        assert!(parse_logic("and", "(id.eq.1,id.neq.2))").is_ok());
    }

    #[test]
    fn logic_trees() {
        let t = parse_logic("or", "(age.lt.18,not.and(a.gte.0,b.in.(1,2)),c.eq.\"x,y\")").unwrap();
        match t {
            LogicTree::Expr { or, children, .. } => {
                assert!(or);
                assert_eq!(children.len(), 3);
            }
            _ => panic!(),
        }
        let e = parse_logic("or", "()").unwrap_err().body(false);
        assert_eq!(
            e["message"],
            "\"failed to parse logic tree (())\" (line 1, column 4)"
        );
        assert_eq!(e["details"], "unexpected \")\" expecting field name (* or [a..z0..9_$]), negation operator (not) or logic operator (and, or)");
    }

    #[test]
    fn order_forms() {
        let t = parse_order("a.desc.nullslast,b,c->>x.asc,d(e).nullsfirst").unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].direction, Some(Direction::Desc));
        assert_eq!(t[0].nulls, Some(Nulls::Last));
        assert_eq!(t[3].relation.as_deref(), Some("d"));
        let e = parse_order("id.asc.nullslasttt").unwrap_err().body(false);
        assert_eq!(
            e["message"],
            "\"failed to parse order (id.asc.nullslasttt)\" (line 1, column 17)"
        );
        assert_eq!(
            e["details"],
            "unexpected 't' expecting \",\" or end of input"
        );
        assert!(parse_order("id.ascc").is_err());
    }

    #[test]
    fn keys_split_on_dots_outside_quotes_and_json() {
        assert_eq!(
            split_key("a.b.c->>d.e"),
            (
                vec!["a".to_string(), "b".to_string()],
                "c->>d.e".to_string()
            )
        );
        assert_eq!(split_key("\"x.y\""), (vec![], "\"x.y\"".to_string()));
    }
}
