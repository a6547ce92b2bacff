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

fn object_keys(v: &Value) -> Option<BTreeSet<&str>> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
}

/// A JSON body: the text goes to PostgreSQL as is; the server only reads the keys.
pub fn parse_json(body: &[u8]) -> Result<Payload, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| invalid_json())?;
    let value: Value = serde_json::from_str(text).map_err(|_| invalid_json())?;
    let keys = match &value {
        Value::Object(o) => o.keys().cloned().collect(),
        Value::Array(items) => {
            let mut sets = items.iter().map(object_keys);
            match sets.next() {
                None => Vec::new(),
                Some(None) => return Err(keys_must_match()),
                Some(Some(first)) => {
                    if sets.any(|s| s.as_ref() != Some(&first)) {
                        return Err(keys_must_match());
                    }
                    first.into_iter().map(str::to_string).collect()
                }
            }
        }
        _ => return Err(invalid_json()),
    };
    Ok(Payload {
        json: text.to_string(),
        keys,
    })
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
    Ok(Payload {
        json: Value::Array(rows).to_string(),
        keys,
    })
}

/// `a=1&b=x`: one row, every value a JSON string.
pub fn parse_form(body: &[u8]) -> Payload {
    let row: Map<String, Value> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    Payload {
        keys: row.keys().cloned().collect(),
        json: Value::Object(row).to_string(),
    }
}

/// The media type of a Content-Type header, lower-cased, without parameters; an absent
/// header means JSON.
pub fn media_type_of(content_type: Option<&str>) -> String {
    content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|| "application/json".into())
}

/// Picks the parser for the Content-Type (absent = JSON).
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Payload, ApiError> {
    match media_type_of(content_type).as_str() {
        "application/json" | "" => parse_json(body),
        "text/csv" => parse_csv(body),
        "application/x-www-form-urlencoded" => Ok(parse_form(body)),
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
        let p = parse_json(br#"{"b":1,"a":2}"#).unwrap();
        assert_eq!(p.keys, vec!["a", "b"]);
        let p = parse_json(br#"[{"a":1},{"a":2}]"#).unwrap();
        assert_eq!(p.keys, vec!["a"]);
        assert_eq!(parse_json(b"[]").unwrap().keys, Vec::<String>::new());
        assert_eq!(
            parse_json(br#"[{"a":1},{"b":2}]"#).unwrap_err(),
            keys_must_match()
        );
        assert_eq!(
            parse_json(br#"[{"a":1},3]"#).unwrap_err(),
            keys_must_match()
        );
        assert_eq!(parse_json(b"}{ x").unwrap_err(), invalid_json());
        assert_eq!(parse_json(b"").unwrap_err(), invalid_json());
    }

    #[test]
    fn csv_and_form_bodies() {
        let p = parse_csv(b"a,b\n1,NULL\n\"x,y\",\n").unwrap();
        assert_eq!(p.json, r#"[{"a":"1","b":null},{"a":"x,y","b":""}]"#);
        assert!(parse_csv(b"a,b\nfoo,bar\nbaz").is_err());
        let p = parse_form(b"integer=7&text=a+b");
        assert_eq!(p.json, r#"{"integer":"7","text":"a b"}"#);
        assert!(parse(Some("text/plain"), b"x").is_err());
        assert!(parse(Some("Application/JSON; charset=utf-8"), b"{}").is_ok());
    }
}
