//! Templates: the statement a table read (or an insert, or a call with a JSON object)
//! renders, kept per request shape so that the next request of the same shape binds its
//! values instead of planning and rendering again.
//!
//! A read's shape is everything parsing, resolving and planning read except the values
//! of simple comparison filters (`col=eq.5`, `col=not.lt.5`, ...): method, path, the rest
//! of the query string verbatim, Accept, Accept-Profile, Prefer and Range. A query string
//! with other filters (`in`, `like`, `fts`, logic trees: values that would stay in the
//! key, so shapes that rarely repeat) has no shape and is planned as before. Resolving,
//! planning and rendering are functions of the snapshot and of the shape, so a known
//! shape also skips parsing its query string (but for Content-Location's canonical form)
//! and resolving; each value only becomes one bind parameter (`sql`: "every client value
//! is a bind parameter"). Rather than trust that, a template is learnt by planning the
//! request a second time with each such value replaced by a sentinel: the template is
//! kept only when both renderings have the same text and row shape, the same response
//! facts, and every parameter either is a sentinel (then it is that value, bound per
//! request) or is equal in both (a constant of the shape, such as a limit). A shape that
//! fails the check is remembered as not templatable, so it is not probed again. Learning
//! waits for a shape's second request: the first is only noted, so shapes that never
//! repeat cost a cache entry, not a second planning.
//!
//! The cache lives in the snapshot: a schema or configuration reload starts an empty one.
//! Measured (callgrind, bench/instructions.sh): parsing the query string, resolving,
//! planning and rendering were about 14,000 instructions of a by-pk read and 42,000 of
//! an embed, of 71,000 and 100,000.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use hyper::header::{HeaderMap, HeaderName, ACCEPT, CONTENT_TYPE, RANGE};
use sieve_cache::SieveCache;

use crate::plan::Resolved;
use crate::request::{CountPref, MediaType, ACCEPT_PROFILE, CONTENT_PROFILE, PREFER};
use crate::schema::routines::{AggHandler, MediaHandler};
use crate::sql::Statement;

/// Shapes kept per snapshot. Real APIs read a few dozen shapes; the bound keeps a client
/// that invents shapes (each at most [`MAX_KEY_BYTES`]) to a few megabytes.
const CAPACITY: usize = 512;

/// A longer shape is not templated: its key alone would be a large entry, and such
/// requests are rarely repeated.
const MAX_KEY_BYTES: usize = 2048;

/// A statement longer than this is not kept: with [`CAPACITY`], templates then hold at
/// most about 10 MB however a client shapes its requests.
const MAX_SQL_BYTES: usize = 16 * 1024;

/// The operators whose value the filter parser takes verbatim, as the one bind parameter
/// of `expr op $n` (like/ilike rewrite `*`, in/is/fts parse theirs).
const VERBATIM_OPERATORS: [&str; 6] = ["eq.", "neq.", "gt.", "gte.", "lt.", "lte."];

/// What a read's response needs of its plan once the statement is rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadFacts {
    pub count: Option<CountPref>,
    pub media_type: MediaType,
    pub aggregate: Option<AggHandler>,
    pub head: bool,
    pub max_rows: Option<i64>,
    pub offset: i64,
    pub table_name: String,
    pub legacy_targets: Vec<(String, String)>,
}

impl ReadFacts {
    pub fn of(plan: &crate::plan::ReadPlan) -> ReadFacts {
        ReadFacts {
            count: plan.count,
            media_type: plan.media_type,
            aggregate: plan.aggregate.clone(),
            head: plan.head,
            max_rows: plan.max_rows,
            offset: plan.root.offset,
            table_name: plan.root.table.name.clone(),
            legacy_targets: plan.legacy_targets.clone(),
        }
    }

    /// A count from the planner takes a statement of its own, which is not templated.
    fn templatable(&self) -> bool {
        !matches!(self.count, Some(CountPref::Planned | CountPref::Estimated))
    }
}

/// A read's statement with its values taken out.
#[derive(Debug)]
pub struct ReadTemplate {
    statement: Statement,
    /// (parameter index, value index): the parameters bound per request.
    bound: Vec<(usize, usize)>,
    pub facts: ReadFacts,
    /// The schema, negotiation and transaction end the shape resolves to.
    pub resolved: Resolved,
    /// Content-Location's canonical query with the values left out, when the order of
    /// its pairs does not depend on them.
    canonical: Option<Vec<Part>>,
}

/// A piece of a canonical query: text, or where a value goes (form-encoded).
#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    Value(usize),
}

/// The canonical form of a probe query, split at its sentinels: `None` when two pairs
/// share a key (sorting then looks at values) or it does not parse.
fn canonical_parts(probe_query: &str) -> Option<Vec<Part>> {
    let (canonical, distinct_keys) = crate::request::canonical_form(probe_query).ok()?;
    if !distinct_keys {
        return None;
    }
    // A sentinel `\u{1}n\u{1}` is form-encoded as `%01n%01`; nothing else makes `%01`.
    let mut parts = Vec::new();
    let mut rest = canonical.as_str();
    while let Some(at) = rest.find("%01") {
        let after = &rest[at + 3..];
        let digits = after.find("%01")?;
        let value = after[..digits].parse().ok()?;
        parts.push(Part::Text(rest[..at].to_string()));
        parts.push(Part::Value(value));
        rest = &after[digits + 3..];
    }
    parts.push(Part::Text(rest.to_string()));
    Some(parts)
}

impl ReadTemplate {
    /// Content-Location's canonical query for these values, when the template can make
    /// it; never for a value holding NUL, which parsing refuses.
    pub fn canonical(&self, values: &[Cow<str>]) -> Option<String> {
        let parts = self.canonical.as_ref()?;
        if values.iter().any(|v| v.contains('\0')) {
            return None;
        }
        let mut out = String::with_capacity(128);
        for part in parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value(i) => {
                    out.extend(form_urlencoded::byte_serialize(values.get(*i)?.as_bytes()))
                }
            }
        }
        Some(out)
    }

    /// The statement for a request of this shape with these values.
    pub fn statement(&self, values: &[Cow<str>]) -> Statement {
        let mut statement = self.statement.clone();
        for &(param, value) in &self.bound {
            statement.params[param] = values[value].to_string();
        }
        statement
    }
}

/// A read request's shape: its cache key, and its values in query-string order.
pub struct ReadShape<'q> {
    key: String,
    values: Vec<Cow<'q, str>>,
    query: &'q str,
}

/// The sentinel that stands for value `i` while a template is learnt. A query string
/// holding the character it is made of (`%01`) is never templated, so no client value
/// or constant can be mistaken for one.
fn sentinel(i: usize) -> String {
    format!("\u{1}{i}\u{1}")
}

impl<'q> ReadShape<'q> {
    /// The shape of a GET or HEAD that may be a table read, or `None` when it is not
    /// worth templating. Only a request resolved as a table read is ever learnt.
    pub fn of(
        method: &hyper::Method,
        path: &str,
        query: &'q str,
        headers: &HeaderMap,
    ) -> Option<ReadShape<'q>> {
        let read = *method == hyper::Method::GET || *method == hyper::Method::HEAD;
        if !read || path == "/" || path.starts_with("/rpc/") || query.contains("%01") {
            return None;
        }
        let mut key = String::with_capacity(path.len() + query.len() + 64);
        for part in [method.as_str(), "\0", path, "\0"] {
            key.push_str(part);
        }
        push_headers(
            &mut key,
            headers,
            [&ACCEPT, &ACCEPT_PROFILE, &RANGE, &PREFER],
        );
        key.push('\0');
        let mut values = Vec::new();
        for piece in query.split('&') {
            match value_of(piece) {
                Some((prefix, value)) => {
                    key.push_str(prefix);
                    key.push('\u{1}');
                    values.push(value);
                }
                None if is_structural(piece) => key.push_str(piece),
                // A filter whose value would stay in the key: such shapes rarely repeat.
                None => return None,
            }
            key.push('&');
        }
        (key.len() <= MAX_KEY_BYTES).then_some(ReadShape { key, values, query })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn values(&self) -> &[Cow<'q, str>] {
        &self.values
    }

    /// The query string with each value replaced by its sentinel, for learning.
    pub fn probe_query(&self) -> String {
        let mut probe = String::with_capacity(self.query.len() + 16);
        let mut n = 0;
        for (i, piece) in self.query.split('&').enumerate() {
            if i > 0 {
                probe.push('&');
            }
            match value_of(piece) {
                Some((prefix, _)) => {
                    probe.push_str(prefix);
                    let s = sentinel(n);
                    probe.extend(percent_encoding::utf8_percent_encode(
                        &s,
                        percent_encoding::NON_ALPHANUMERIC,
                    ));
                    n += 1;
                }
                None => probe.push_str(piece),
            }
        }
        probe
    }
}

/// Every value of each of these headers, in order, each ended by NUL (a missing header
/// writes nothing, so it differs from an empty one only in the next separator). A walk
/// over the request's few headers per name: comparing names costs a few instructions
/// where a lookup hashes the name (about 650 instructions a request for four, callgrind).
fn push_headers(key: &mut String, headers: &HeaderMap, names: [&HeaderName; 4]) {
    for name in names {
        key.push('\u{2}');
        for (_, value) in headers.iter().filter(|(n, _)| *n == name) {
            key.push_str(&String::from_utf8_lossy(value.as_bytes()));
            key.push('\0');
        }
    }
}

/// Keys whose values shape the statement rather than fill it, kept in the key as they are
/// (a last dotted segment, so `children.order` is one too).
const STRUCTURAL_KEYS: [&str; 6] = [
    "select",
    "order",
    "limit",
    "offset",
    "columns",
    "on_conflict",
];

/// A piece kept verbatim in a shape's key: a structural parameter, a filter testing
/// `is.` (null, not_null, true, false, unknown), or a piece without `=`, which the
/// parser ignores.
fn is_structural(piece: &str) -> bool {
    let Some((key, value)) = piece.split_once('=') else {
        return true;
    };
    let last = key.rsplit('.').next().unwrap_or(key);
    STRUCTURAL_KEYS.contains(&last)
        || value
            .strip_prefix("not.")
            .unwrap_or(value)
            .starts_with("is.")
}

/// `key=[not.]op.value` with a verbatim operator: the piece up to the value, and the
/// value decoded.
fn value_of(piece: &str) -> Option<(&str, Cow<'_, str>)> {
    let eq = piece.find('=')?;
    let raw = &piece[eq + 1..];
    let after_not = raw.strip_prefix("not.").unwrap_or(raw);
    let op = VERBATIM_OPERATORS
        .iter()
        .find(|op| after_not.starts_with(*op))?;
    let start = piece.len() - after_not.len() + op.len();
    Some((&piece[..start], decode(&piece[start..])))
}

/// A query-string value decoded as `form_urlencoded::parse` decodes it (which the
/// query-string parser uses): `+` is a space, then percent-decoding, then UTF-8 with
/// replacement characters. Without `+` or `%` it is borrowed, as there. (Not through
/// `form_urlencoded::parse` itself: it would end the value at a `=` or `&`.)
fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains(['+', '%']) {
        return Cow::Borrowed(raw);
    }
    let plus_as_space = raw.replace('+', " ");
    let decoded = percent_encoding::percent_decode(plus_as_space.as_bytes());
    Cow::Owned(decoded.decode_utf8_lossy().into_owned())
}

/// A request rendered: its statement and what its response needs (`ReadFacts`,
/// `WriteFacts`).
pub struct Rendering<'a, F> {
    pub statement: &'a Statement,
    pub facts: &'a F,
}

impl<F: PartialEq> Rendering<'_, F> {
    /// Whether a probe's rendering can differ from this one in its parameters only: same
    /// text, row shape, number of parameters and response facts, and short enough to keep.
    fn same_but_parameters(&self, probe: &Rendering<F>) -> bool {
        let (real, other) = (self.statement, probe.statement);
        real.sql == other.sql
            && real.sql.len() <= MAX_SQL_BYTES
            && real.shape == other.shape
            && real.params.len() == other.params.len()
            && self.facts == probe.facts
    }
}

/// Learns a template from a request's rendering and its probe's (the same request with
/// sentinels for values, `probe_query`): `None` when they differ in anything but those
/// values.
pub fn learn(
    real: Rendering<ReadFacts>,
    probe: Rendering<ReadFacts>,
    shape: &ReadShape,
    probe_query: &str,
    resolved: &Resolved,
) -> Option<ReadTemplate> {
    if !real.same_but_parameters(&probe) || !real.facts.templatable() {
        return None;
    }
    let values = shape.values();
    let real_facts = real.facts;
    let (real, probe) = (real.statement, probe.statement);
    let mut bound = Vec::new();
    let mut used = vec![false; values.len()];
    for (i, (r, p)) in real.params.iter().zip(&probe.params).enumerate() {
        match (0..values.len()).find(|&v| *p == sentinel(v)) {
            Some(v) if *r == values[v] => {
                bound.push((i, v));
                used[v] = true;
            }
            Some(_) => return None,
            None if r == p => {}
            None => return None,
        }
    }
    // A value that reached no parameter went somewhere else: not a template.
    if used.contains(&false) {
        return None;
    }
    // Bound parameters are left empty: each request fills them, and an empty string
    // clones without allocating.
    let mut statement = real.clone();
    for &(param, _) in &bound {
        statement.params[param] = String::new();
    }
    Some(ReadTemplate {
        statement,
        bound,
        facts: real_facts.clone(),
        resolved: resolved.clone(),
        canonical: canonical_parts(probe_query),
    })
}

/// What a write's response needs of its plan once the statement is rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteFacts {
    pub is_put: bool,
    pub representation: bool,
    pub location: bool,
    /// An insert resolving conflicts (Preference-Applied names the resolution).
    pub upsert: bool,
    pub table_name: String,
}

impl WriteFacts {
    pub fn of(plan: &crate::plan::MutatePlan) -> WriteFacts {
        use crate::plan::MutationKind;
        WriteFacts {
            is_put: matches!(plan.kind, MutationKind::Put { .. }),
            representation: plan.representation,
            location: plan.location,
            upsert: matches!(&plan.kind, MutationKind::Insert { conflict: Some(_) }),
            table_name: plan.table.name.clone(),
        }
    }
}

/// What a call's transaction and response need of its plan once the statement is
/// rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct CallFacts {
    pub read_only: bool,
    /// The function's settings named in db-hoisted-tx-settings.
    pub hoisted: Vec<(String, String)>,
    pub returns_set: bool,
    pub volatile: bool,
    pub returns_void: bool,
    /// The custom media type the call answers with its raw value.
    pub media: Option<MediaHandler>,
    pub media_type: MediaType,
    pub head: bool,
    /// The result rows' offset and handler aggregate, for functions returning rows.
    pub offset: i64,
    pub aggregate: Option<AggHandler>,
}

impl CallFacts {
    pub fn of(plan: &crate::plan::CallPlan, hoisted_names: &[String]) -> CallFacts {
        let routine = plan.routine;
        CallFacts {
            read_only: plan.read_only,
            hoisted: routine
                .settings
                .iter()
                .filter(|(k, _)| hoisted_names.contains(k))
                .cloned()
                .collect(),
            returns_set: routine.returns_set,
            volatile: routine.volatile,
            returns_void: routine.returns == crate::schema::routines::Returns::Void,
            media: plan.media.cloned(),
            media_type: plan.media_type,
            head: plan.head,
            offset: plan.read.as_ref().map_or(0, |r| r.root.offset),
            aggregate: plan.read.as_ref().and_then(|r| r.aggregate.clone()),
        }
    }
}

/// The shape of a POST whose JSON body becomes one bind parameter: an insert into a
/// table or view, or a call of a function. Method, path, the query string verbatim,
/// Accept, Content-Profile, Content-Type and Prefer; the payload's keys complete it once
/// the body is parsed ([`PayloadShape::key_with`]). Planning and rendering such a request
/// read nothing else of it, and its payload only becomes one bind parameter, which
/// [`learn_payload`] checks as [`learn`] does for reads.
pub struct PayloadShape {
    key: String,
}

/// The payload a probe plans with: not JSON, so no client payload the planner parsed
/// can be equal to it.
pub const PAYLOAD_SENTINEL: &str = "\u{1}payload\u{1}";

impl PayloadShape {
    /// The shape of a POST to a table or view (an insert) or to /rpc/ (a call).
    pub fn of(
        method: &hyper::Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
    ) -> Option<Self> {
        if *method != hyper::Method::POST || path == "/" {
            return None;
        }
        let mut key = String::with_capacity(path.len() + query.len() + 64);
        for part in [path, "\0", query, "\0"] {
            key.push_str(part);
        }
        push_headers(
            &mut key,
            headers,
            [&ACCEPT, &CONTENT_PROFILE, &CONTENT_TYPE, &PREFER],
        );
        (key.len() <= MAX_KEY_BYTES).then_some(PayloadShape { key })
    }

    /// The key of this shape with a payload of these keys, each written with its length
    /// (a key may hold any character).
    pub fn key_with(&self, keys: &[String]) -> Option<String> {
        let mut key = String::with_capacity(self.key.len() + keys.len() * 16);
        key.push_str(&self.key);
        for k in keys {
            key.push_str(itoa::Buffer::new().format(k.len()));
            key.push(':');
            key.push_str(k);
        }
        (key.len() <= MAX_KEY_BYTES).then_some(key)
    }
}

/// An insert's or a call's statement with its payload taken out.
#[derive(Debug)]
pub struct PayloadTemplate<F> {
    statement: Statement,
    payload_param: usize,
    pub facts: F,
}

pub type InsertTemplate = PayloadTemplate<WriteFacts>;
pub type CallTemplate = PayloadTemplate<CallFacts>;

impl<F> PayloadTemplate<F> {
    /// The statement for a payload of this shape.
    pub fn statement(&self, payload: String) -> Statement {
        let mut statement = self.statement.clone();
        statement.params[self.payload_param] = payload;
        statement
    }
}

/// Learns an insert's or a call's template from its rendering and a probe's (the same
/// request with [`PAYLOAD_SENTINEL`] for its payload text, `payload`): `None` unless they
/// differ only in that one parameter.
pub fn learn_payload<F: Clone + PartialEq>(
    real: Rendering<F>,
    probe: Rendering<F>,
    payload: &str,
) -> Option<PayloadTemplate<F>> {
    if !real.same_but_parameters(&probe) {
        return None;
    }
    let real_facts = real.facts;
    let (real, probe) = (real.statement, probe.statement);
    let mut payload_param = None;
    for (i, (r, p)) in real.params.iter().zip(&probe.params).enumerate() {
        match (p == PAYLOAD_SENTINEL, r == payload) {
            (true, true) if payload_param.is_none() => payload_param = Some(i),
            (false, _) if r == p => {}
            _ => return None,
        }
    }
    let payload_param = payload_param?;
    let mut params = Vec::with_capacity(real.params.len());
    for (i, p) in real.params.iter().enumerate() {
        params.push(if i == payload_param {
            String::new()
        } else {
            p.clone()
        });
    }
    Some(PayloadTemplate {
        statement: Statement {
            sql: real.sql.clone(),
            params,
            shape: real.shape,
        },
        payload_param,
        facts: real_facts.clone(),
    })
}

/// A snapshot's templates of one kind by shape key. A shape is learnt the second time it
/// is seen: one seen once is only marked, so requests whose shapes do not repeat (a
/// changing offset, say) cost a cache entry rather than a second planning each.
pub struct Templates<T>(Mutex<SieveCache<String, Entry<T>, foldhash::fast::RandomState>>);

enum Entry<T> {
    Seen,
    Template(Arc<T>),
    NotTemplatable,
}

/// What the cache knows of a shape.
pub enum Known<T> {
    Template(Arc<T>),
    NotTemplatable,
    /// Seen once before: learn it now.
    Seen,
    Unknown,
}

impl<T> Default for Templates<T> {
    fn default() -> Self {
        let cache =
            SieveCache::new_with_hasher(CAPACITY, Default::default()).expect("a non-zero capacity");
        Templates(Mutex::new(cache))
    }
}

impl<T> Templates<T> {
    pub fn get(&self, key: &str) -> Known<T> {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(key) {
            Some(Entry::Template(t)) => Known::Template(t.clone()),
            Some(Entry::NotTemplatable) => Known::NotTemplatable,
            Some(Entry::Seen) => Known::Seen,
            None => Known::Unknown,
        }
    }

    /// Notes a shape seen for the first time.
    pub fn seen(&self, key: &str) {
        self.insert(key, Entry::Seen);
    }

    /// Keeps what was learnt of a shape: its template, or that it has none.
    pub fn put(&self, key: &str, template: Option<T>) {
        let entry = match template {
            Some(t) => Entry::Template(Arc::new(t)),
            None => Entry::NotTemplatable,
        };
        self.insert(key, entry);
    }

    fn insert(&self, key: &str, entry: Entry<T>) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(key.to_string(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(query: &str) -> Option<ReadShape<'_>> {
        ReadShape::of(&hyper::Method::GET, "/items", query, &HeaderMap::new())
    }

    #[test]
    fn values_of_verbatim_operators_leave_the_key() {
        let a = shape("id=eq.1&order=id&limit=10").unwrap();
        let b = shape("id=eq.2&order=id&limit=10").unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.values, vec![Cow::Borrowed("1")]);
        assert_eq!(a.probe_query(), "id=eq.%010%01&order=id&limit=10");
        let c = shape("id=eq.1&order=id&limit=11").unwrap();
        assert_ne!(a.key, c.key, "a limit stays in the key");
    }

    #[test]
    fn filters_with_other_operators_have_no_shape() {
        for query in [
            "name=like.a*",
            "id=in.(1,2)",
            "or=(id.eq.1,id.eq.2)",
            "t=fts.x",
        ] {
            assert!(shape(query).is_none(), "{query}");
        }
        let n = shape("id=not.gt.5&gone=is.null&x=not.is.true").unwrap();
        assert_eq!(n.values, vec![Cow::Borrowed("5")]);
        assert_ne!(
            n.key,
            shape("id=not.gt.5&gone=is.not_null&x=not.is.true")
                .unwrap()
                .key
        );
        let embed = shape("select=id,c(id)&c.order=id&c.limit=2&c.offset=1&id=eq.1").unwrap();
        assert_eq!(embed.values, vec![Cow::Borrowed("1")]);
    }

    #[test]
    fn values_are_decoded_as_the_parser_decodes_them() {
        let s = shape("name=eq.a%20b+c&x=gte.%C3%A9").unwrap();
        assert_eq!(s.values, vec![Cow::Borrowed("a b c"), Cow::Borrowed("é")]);
    }

    #[test]
    fn decoding_matches_the_query_string_parser() {
        for raw in [
            "a",
            "a+b",
            "%41%2B",
            "%zz%",
            "%C3%28",
            "%e2%82%ac+",
            "=%3D=",
        ] {
            let piece = format!("k={raw}");
            let (_, parsed) = form_urlencoded::parse(piece.as_bytes()).next().unwrap();
            assert_eq!(decode(raw), parsed, "{raw}");
        }
    }

    #[test]
    fn canonical_parts_leave_the_values_out() {
        let probe = shape("select=id&id=eq.5&name=eq.a%20b")
            .unwrap()
            .probe_query();
        let parts = canonical_parts(&probe).unwrap();
        let template_canonical = |values: &[&str]| {
            let mut out = String::new();
            for part in &parts {
                match part {
                    Part::Text(t) => out.push_str(t),
                    Part::Value(i) => {
                        out.extend(form_urlencoded::byte_serialize(values[*i].as_bytes()))
                    }
                }
            }
            out
        };
        let (real, _) =
            crate::request::canonical_form("select=id&id=eq.7&name=eq.x%2By%20%C3%A9").unwrap();
        assert_eq!(template_canonical(&["7", "x+y é"]), real);
        assert!(
            canonical_parts("id=gt.%011%01&id=lt.%012%01").is_none(),
            "a repeated key"
        );
    }

    #[test]
    fn payload_keys_complete_an_insert_key_unambiguously() {
        let post = |headers: &HeaderMap| {
            PayloadShape::of(&hyper::Method::POST, "/items", "", headers).unwrap()
        };
        let shape = post(&HeaderMap::new());
        let split = shape.key_with(&["a".into(), "b".into()]).unwrap();
        let joined = shape.key_with(&["a1:b".into()]).unwrap();
        assert_ne!(split, joined);
        assert_ne!(split, shape.key_with(&["a".into()]).unwrap());
        let mut csv = HeaderMap::new();
        csv.insert(CONTENT_TYPE, "text/csv".parse().unwrap());
        assert_ne!(
            split,
            post(&csv).key_with(&["a".into(), "b".into()]).unwrap()
        );
        assert!(PayloadShape::of(&hyper::Method::PATCH, "/items", "", &HeaderMap::new()).is_none());
        assert!(PayloadShape::of(&hyper::Method::POST, "/", "", &HeaderMap::new()).is_none());
        let call = PayloadShape::of(&hyper::Method::POST, "/rpc/f", "", &HeaderMap::new());
        assert_ne!(
            call.unwrap().key_with(&["a".into()]),
            PayloadShape::of(&hyper::Method::POST, "/f", "", &HeaderMap::new())
                .unwrap()
                .key_with(&["a".into()])
        );
    }

    #[test]
    fn an_insert_template_takes_only_the_payload_out() {
        let statement = |payload: &str, limit: &str| Statement {
            sql: "INSERT ... $1 ... LIMIT $2".into(),
            params: vec![payload.into(), limit.into()],
            shape: crate::sql::RowShape::Rows,
        };
        let facts = WriteFacts {
            is_put: false,
            representation: true,
            location: false,
            upsert: false,
            table_name: "items".into(),
        };
        let rendering = |statement| Rendering {
            statement,
            facts: &facts,
        };
        let real = statement(r#"{"a":1}"#, "10");
        let probe = statement(PAYLOAD_SENTINEL, "10");
        let t = learn_payload(rendering(&real), rendering(&probe), r#"{"a":1}"#).unwrap();
        assert_eq!(
            t.statement(r#"{"a":2}"#.into()).params,
            vec![r#"{"a":2}"#, "10"]
        );
        let moved = statement(PAYLOAD_SENTINEL, "11");
        assert!(learn_payload(rendering(&real), rendering(&moved), r#"{"a":1}"#).is_none());
        let twice = Statement {
            params: vec![PAYLOAD_SENTINEL.into(), PAYLOAD_SENTINEL.into()],
            ..probe.clone()
        };
        let real_twice = Statement {
            params: vec![r#"{"a":1}"#.into(), r#"{"a":1}"#.into()],
            ..real.clone()
        };
        assert!(learn_payload(rendering(&real_twice), rendering(&twice), r#"{"a":1}"#).is_none());
    }

    #[test]
    fn a_query_holding_the_sentinel_character_is_not_templated() {
        assert!(shape("id=eq.%01").is_none());
    }

    #[test]
    fn headers_the_planner_reads_are_in_the_key() {
        let key = |h: &HeaderMap| {
            ReadShape::of(&hyper::Method::GET, "/items", "id=eq.1", h)
                .unwrap()
                .key
        };
        let plain = key(&HeaderMap::new());
        for (name, value) in [
            (RANGE, "0-1"),
            (ACCEPT, "text/csv"),
            (ACCEPT_PROFILE, "v2"),
            (PREFER, "count=exact"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), value.parse().unwrap());
            assert_ne!(plain, key(&h), "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert(PREFER, "".parse().unwrap());
        assert_ne!(plain, key(&h), "an empty Prefer is not a missing one");
    }

    #[test]
    fn only_reads_of_relations_have_shapes() {
        let h = HeaderMap::new();
        for (method, path) in [
            (hyper::Method::POST, "/items"),
            (hyper::Method::GET, "/rpc/f"),
            (hyper::Method::GET, "/"),
        ] {
            assert!(ReadShape::of(&method, path, "id=eq.1", &h).is_none());
        }
        let head = ReadShape::of(&hyper::Method::HEAD, "/items", "id=eq.1", &h).unwrap();
        assert_ne!(head.key, shape("id=eq.1").unwrap().key);
    }
}
