//! Request bodies for writes: JSON (object or array of objects with the same keys), CSV
//! and x-www-form-urlencoded, all turned into one JSON text PostgreSQL expands itself.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// JSON text: an object or an array of objects.
    pub json: String,
    /// The keys of the objects (the columns written), sorted.
    pub keys: Vec<String>,
}

fn invalid_json() -> ApiError {
    ApiError::InvalidBody("Empty or invalid json".into())
}

fn keys_must_match() -> ApiError {
    ApiError::InvalidBody("All object keys must match".into())
}

/// A JSON body: the text goes to PostgreSQL as is; the server only reads the keys of its
/// objects, without building the values. A tree of serde values cost 12.7x the body
/// (684 MB peak RSS for a 53 MB array); walking the text keeps the body the one copy.
pub fn parse_json(body: Vec<u8>) -> Result<Payload, ApiError> {
    let text = String::from_utf8(body).map_err(|_| invalid_json())?;
    let keys = json_keys(&text)?;
    refuse_nul_keys(&keys)?;
    Ok(Payload { json: text, keys })
}

/// Refuses column names holding NUL, which no PostgreSQL name can (and which the SQL
/// text the names are quoted into cannot carry).
fn refuse_nul_keys(keys: &[String]) -> Result<(), ApiError> {
    if keys.iter().any(|k| k.contains('\0')) {
        return Err(ApiError::InvalidBody(
            "A column name in the body contains a NUL character".into(),
        ));
    }
    Ok(())
}

/// The sorted keys of a JSON object, or of every object of a JSON array (which must all
/// have the same keys). Invalid JSON anywhere is reported before unequal keys.
fn json_keys(text: &str) -> Result<Vec<String>, ApiError> {
    if nesting_exceeds(text.as_bytes(), MAX_BODY_NESTING) {
        return Err(invalid_json());
    }
    keys_of(text)
}

/// [`json_keys`] for text whose nesting is already checked.
fn keys_of(text: &str) -> Result<Vec<String>, ApiError> {
    use serde::Deserializer as _;
    let mismatch = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let keys = de
        .deserialize_any(BodyShape {
            mismatch: Some(&mismatch),
        })
        .and_then(|keys| de.end().map(|_| keys))
        .map_err(|_| invalid_json())?;
    match keys {
        Some(_) if mismatch.get() => Err(keys_must_match()),
        Some(keys) => Ok(keys.into_iter().map(Cow::into_owned).collect()),
        None => Err(invalid_json()),
    }
}

/// The deepest nesting of arrays and objects a JSON body may have: serde_json's own
/// recursion limit, which refused deeper bodies when they were parsed into a tree.
/// Skipping values is iterative in serde_json and would take any depth, leaving
/// PostgreSQL to fail with "stack depth limit exceeded".
const MAX_BODY_NESTING: usize = 128;

/// Whether brackets outside strings nest deeper than `limit` (the text need not be
/// valid JSON; the parser judges that).
fn nesting_exceeds(text: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        match (in_string, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') | (false, b'"') => in_string = !in_string,
            (false, b'[' | b'{') => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A call's JSON body as the one object of arguments it stands for: the object itself,
/// or the first element of an array (`{}` for an empty one), as text with its sorted
/// keys; another value stands for itself, with no keys. Like [`parse_json`], nothing is
/// built of the values.
pub fn first_object(text: &str) -> Result<(String, Vec<String>), ApiError> {
    if nesting_exceeds(text.as_bytes(), MAX_BODY_NESTING) {
        return Err(invalid_json());
    }
    let first: Option<&serde_json::value::RawValue> = match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let mut de = serde_json::Deserializer::from_str(text);
            let first = serde::Deserializer::deserialize_seq(&mut de, FirstElement)
                .and_then(|first| de.end().map(|_| first))
                .map_err(|_| invalid_json())?;
            match first {
                Some(raw) => Some(raw),
                None => return Ok(("{}".to_string(), Vec::new())),
            }
        }
        _ => None,
    };
    let object = first.map_or(text, serde_json::value::RawValue::get);
    let keys = match object.trim_start().as_bytes().first() {
        Some(b'{') => keys_of(object)?,
        _ => {
            serde_json::from_str::<IgnoredAny>(object).map_err(|_| invalid_json())?;
            Vec::new()
        }
    };
    refuse_nul_keys(&keys)?;
    Ok((object.to_string(), keys))
}

/// An array's first element as the text it was sent as; the rest are skipped.
struct FirstElement;

impl<'de> Visitor<'de> for FirstElement {
    type Value = Option<&'de serde_json::value::RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let first = seq.next_element::<&'de serde_json::value::RawValue>()?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(first)
    }
}

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

type KeySet<'de> = BTreeSet<Cow<'de, str>>;

/// What a JSON value says about the columns of a body: an object gives its keys;
/// anything else gives `None`. At the top level (`mismatch` set) an array gives its first
/// object's keys, noting in `mismatch` any element that is not an object with the same
/// keys; an array inside one is just skipped.
struct BodyShape<'m> {
    mismatch: Option<&'m std::cell::Cell<bool>>,
}

impl<'de> DeserializeSeed<'de> for BodyShape<'_> {
    type Value = Option<KeySet<'de>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodyShape<'_> {
    type Value = Option<KeySet<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ObjectKeys.visit_map(map).map(Some)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Some(mismatch) = self.mismatch else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(None);
        };
        let element = || BodyShape { mismatch: None };
        let Some(first) = seq.next_element_seed(element())? else {
            return Ok(Some(KeySet::new()));
        };
        let first = first.unwrap_or_else(|| {
            mismatch.set(true);
            KeySet::new()
        });
        while let Some(keys) = seq.next_element_seed(element())? {
            if keys.as_ref() != Some(&first) {
                mismatch.set(true);
            }
        }
        Ok(Some(first))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An object's keys (borrowed from the text unless escaped), its values skipped.
struct ObjectKeys;

impl<'de> ObjectKeys {
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeySet<'de>, A::Error> {
        let mut keys = KeySet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            map.next_value::<IgnoredAny>()?;
            keys.insert(key);
        }
        Ok(keys)
    }
}

/// A key, borrowed when serde_json can lend it (no escapes in it).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// CSV: a header line of column names, then one row per line; `NULL` is SQL NULL.
pub fn parse_csv(body: &[u8]) -> Result<Payload, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ApiError::InvalidBody(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| match e.kind() {
            csv::ErrorKind::UnequalLengths { .. } => {
                ApiError::InvalidBody("All lines must have same number of fields".into())
            }
            _ => ApiError::InvalidBody(e.to_string()),
        })?;
        let row: Map<String, Value> = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| {
                let v = if v == "NULL" {
                    Value::Null
                } else {
                    Value::String(v.to_string())
                };
                (h.clone(), v)
            })
            .collect();
        rows.push(Value::Object(row));
    }
    let mut keys = headers;
    keys.sort();
    keys.dedup();
    refuse_nul_keys(&keys)?;
    Ok(Payload {
        json: Value::Array(rows).to_string(),
        keys,
    })
}

/// `a=1&b=x`: one row, every value a JSON string.
pub fn parse_form(body: &[u8]) -> Result<Payload, ApiError> {
    let row: Map<String, Value> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let keys: Vec<String> = row.keys().cloned().collect();
    refuse_nul_keys(&keys)?;
    Ok(Payload {
        keys,
        json: Value::Object(row).to_string(),
    })
}

/// The media type of a Content-Type header, lower-cased, without parameters; an absent
/// header means JSON.
pub fn media_type_of(content_type: Option<&str>) -> Cow<'_, str> {
    let Some(content_type) = content_type else {
        return Cow::Borrowed("application/json");
    };
    let media = content_type.split(';').next().unwrap_or("").trim();
    // Borrowed as sent when already lowercase (what clients send): no copy per request.
    if media.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(media.to_ascii_lowercase())
    } else {
        Cow::Borrowed(media)
    }
}

/// Picks the parser for the Content-Type (absent = JSON).
pub fn parse(content_type: Option<&str>, body: Vec<u8>) -> Result<Payload, ApiError> {
    match &*media_type_of(content_type) {
        "application/json" | "" => parse_json(body),
        "text/csv" => parse_csv(&body),
        "application/x-www-form-urlencoded" => parse_form(&body),
        _ => Err(ApiError::InvalidBody(format!(
            "Content-Type not acceptable: {}",
            content_type.unwrap_or_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies() {
        let p = parse_json(br#"{"b":1,"a":2}"#.to_vec()).unwrap();
        assert_eq!(p.keys, vec!["a", "b"]);
        let p = parse_json(br#"[{"a":1},{"a":2}]"#.to_vec()).unwrap();
        assert_eq!(p.keys, vec!["a"]);
        assert_eq!(
            parse_json(b"[]".to_vec()).unwrap().keys,
            Vec::<String>::new()
        );
        assert_eq!(
            parse_json(br#"[{"a":1},{"b":2}]"#.to_vec()).unwrap_err(),
            keys_must_match()
        );
        assert_eq!(
            parse_json(br#"[{"a":1},3]"#.to_vec()).unwrap_err(),
            keys_must_match()
        );
        assert_eq!(parse_json(b"}{ x".to_vec()).unwrap_err(), invalid_json());
        assert_eq!(parse_json(b"".to_vec()).unwrap_err(), invalid_json());
        // Invalid JSON anywhere wins over unequal keys, as when the whole tree was built.
        assert_eq!(
            parse_json(br#"[{"a":1},{"b":2},{"a":"#.to_vec()).unwrap_err(),
            invalid_json()
        );
        assert_eq!(parse_json(b"3".to_vec()).unwrap_err(), invalid_json());
        assert_eq!(parse_json(b"[3]".to_vec()).unwrap_err(), keys_must_match());
        assert_eq!(
            parse_json(b"{\"a\":1} x".to_vec()).unwrap_err(),
            invalid_json()
        );
        // Escaped keys are read as their text; duplicates count once.
        let p = parse_json(br#"[{"\u0061":1,"a":2,"b\"c":[{"x":1}]},{"b\"c":0,"a":1}]"#.to_vec())
            .unwrap();
        assert_eq!(p.keys, vec!["a", "b\"c"]);
        // Nesting past serde_json's recursion limit is invalid, not a crash; up to it is fine.
        let nested = |n: usize| format!("[{{\"a\":{}1{}}}]", "[".repeat(n), "]".repeat(n));
        assert_eq!(
            parse_json(nested(100_000).into_bytes()).unwrap_err(),
            invalid_json()
        );
        assert_eq!(
            parse_json(nested(126).into_bytes()).unwrap().keys,
            vec!["a"]
        );
        assert!(parse_json(nested(127).into_bytes()).is_err());
        assert_eq!(
            parse_json(br#"[{"a":"[[[[{{{{"}]"#.to_vec()).unwrap().keys,
            vec!["a"]
        );
        assert!(matches!(
            parse_json(br#"{"a\u0000":1}"#.to_vec()).unwrap_err(),
            ApiError::InvalidBody(m) if m.contains("NUL")
        ));
    }

    #[test]
    fn a_call_body_is_its_first_object() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            first_object(r#" {"b":1, "a":[1,2]} "#).unwrap(),
            (r#" {"b":1, "a":[1,2]} "#.to_string(), keys(&["a", "b"]))
        );
        assert_eq!(
            first_object(r#"[{"x": 1.50}, {"y": 2}, 3]"#).unwrap(),
            (r#"{"x": 1.50}"#.to_string(), keys(&["x"]))
        );
        assert_eq!(first_object("[]").unwrap(), ("{}".to_string(), keys(&[])));
        assert_eq!(first_object("3").unwrap(), ("3".to_string(), keys(&[])));
        assert_eq!(first_object("[3]").unwrap(), ("3".to_string(), keys(&[])));
        for bad in ["[{", "{} x", "[1,", "nope", r#"{"a":}"#] {
            assert_eq!(first_object(bad).unwrap_err(), invalid_json(), "{bad}");
        }
        assert!(first_object(r#"{"a\u0000":1}"#).is_err());
    }

    #[test]
    fn csv_and_form_bodies() {
        let p = parse_csv(b"a,b\n1,NULL\n\"x,y\",\n").unwrap();
        assert_eq!(p.json, r#"[{"a":"1","b":null},{"a":"x,y","b":""}]"#);
        assert!(parse_csv(b"a,b\nfoo,bar\nbaz").is_err());
        let p = parse_form(b"integer=7&text=a+b").unwrap();
        assert!(parse_form(b"a%00=1").is_err());
        assert!(parse_csv(b"a\0b\n1\n").is_err());
        assert_eq!(p.json, r#"{"integer":"7","text":"a b"}"#);
        assert!(parse(Some("text/plain"), b"x".to_vec()).is_err());
        assert!(parse(Some("Application/JSON; charset=utf-8"), b"{}".to_vec()).is_ok());
    }
}
