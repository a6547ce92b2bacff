//! The Prefer header (RFC 7240) as PostgREST reads it: several headers and comma lists
//! merge, the first occurrence of a preference wins, unknown ones are collected so
//! `handling=strict` can refuse them.

use super::CountPref;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnPref {
    Minimal,
    HeadersOnly,
    Representation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    MergeDuplicates,
    IgnoreDuplicates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxPref {
    Commit,
    Rollback,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preferences {
    pub return_: Option<ReturnPref>,
    pub count: Option<CountPref>,
    pub resolution: Option<Resolution>,
    /// `missing=default` (true) or `missing=null` (false).
    pub missing_default: Option<bool>,
    /// `handling=strict` (true) or `handling=lenient` (false).
    pub strict: Option<bool>,
    pub tx: Option<TxPref>,
    pub timezone: Option<String>,
    pub max_affected: Option<i64>,
    /// Preferences not understood, as sent.
    pub invalid: Vec<String>,
}

impl Preferences {
    pub fn parse<'a>(values: impl Iterator<Item = &'a str>) -> Preferences {
        let mut p = Preferences::default();
        for value in values {
            for pref in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                p.add(pref);
            }
        }
        p
    }

    fn add(&mut self, pref: &str) {
        let (key, value) = pref.split_once('=').unwrap_or((pref, ""));
        let (key, value) = (key.trim(), value.trim());
        let known = match key {
            "return" => set(
                &mut self.return_,
                match value {
                    "minimal" => Some(ReturnPref::Minimal),
                    "headers-only" => Some(ReturnPref::HeadersOnly),
                    "representation" => Some(ReturnPref::Representation),
                    _ => None,
                },
            ),
            "count" => set(
                &mut self.count,
                match value {
                    "exact" => Some(CountPref::Exact),
                    "planned" => Some(CountPref::Planned),
                    "estimated" => Some(CountPref::Estimated),
                    _ => None,
                },
            ),
            "resolution" => set(
                &mut self.resolution,
                match value {
                    "merge-duplicates" => Some(Resolution::MergeDuplicates),
                    "ignore-duplicates" => Some(Resolution::IgnoreDuplicates),
                    _ => None,
                },
            ),
            "missing" => set(
                &mut self.missing_default,
                match value {
                    "default" => Some(true),
                    "null" => Some(false),
                    _ => None,
                },
            ),
            "handling" => set(
                &mut self.strict,
                match value {
                    "strict" => Some(true),
                    "lenient" => Some(false),
                    _ => None,
                },
            ),
            "tx" => set(
                &mut self.tx,
                match value {
                    "commit" => Some(TxPref::Commit),
                    "rollback" => Some(TxPref::Rollback),
                    _ => None,
                },
            ),
            "timezone" if !value.is_empty() => set(&mut self.timezone, Some(value.to_string())),
            "max-affected" => set(&mut self.max_affected, value.parse().ok()),
            _ => false,
        };
        if !known {
            self.invalid.push(pref.to_string());
        }
    }
}

/// Keeps the first value; returns whether `value` was a valid one.
fn set<T>(slot: &mut Option<T>, value: Option<T>) -> bool {
    match value {
        Some(v) => {
            if slot.is_none() {
                *slot = Some(v);
            }
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_headers_and_keeps_the_first() {
        let p = Preferences::parse(
            [
                "return=representation, count=exact",
                "return=minimal,tx=rollback,foo=bar",
            ]
            .into_iter(),
        );
        assert_eq!(p.return_, Some(ReturnPref::Representation));
        assert_eq!(p.count, Some(CountPref::Exact));
        assert_eq!(p.tx, Some(TxPref::Rollback));
        assert_eq!(p.invalid, vec!["foo=bar".to_string()]);
        let p = Preferences::parse(
            ["max-affected=5, handling=strict, missing=default, timezone=UTC, count=none"]
                .into_iter(),
        );
        assert_eq!(p.max_affected, Some(5));
        assert_eq!(p.strict, Some(true));
        assert_eq!(p.missing_default, Some(true));
        assert_eq!(p.timezone.as_deref(), Some("UTC"));
        assert_eq!(p.invalid, vec!["count=none".to_string()]);
    }
}
