//! Parsers for option values: booleans, bounded integers and the composite
//! formats (key:value lists, compressor lists, write concern `w`). Invalid
//! input becomes a warning and `None`, never an error.

use std::time::Duration;

use super::options::{Acknowledgment, AuthMechanismProperties, Compressor, TagSet};

/// Parses `true`/`false`, plus the legacy spellings the Connection String
/// spec recommends accepting with a deprecation warning. The flag says
/// whether the value was a legacy spelling.
pub(super) fn parse_bool(value: &str) -> Option<(bool, bool)> {
    let lower = value.to_ascii_lowercase();
    match lower.as_str() {
        "true" => Some((true, false)),
        "false" => Some((false, false)),
        "1" | "yes" | "y" | "t" => Some((true, true)),
        "0" | "-1" | "no" | "n" | "f" => Some((false, true)),
        _ => None,
    }
}

/// The value of one option being applied, with a place to report problems.
pub(super) struct OptionValue<'a> {
    pub name: &'static str,
    pub text: &'a str,
    pub warnings: &'a mut Vec<String>,
    /// Set when some or all of the value was ignored.
    pub dropped: bool,
}

impl OptionValue<'_> {
    pub fn reject(&mut self, expected: &str) {
        self.dropped = true;
        self.warnings.push(format!(
            "option {:?}: invalid value {:?} ignored (expected {expected})",
            self.name, self.text
        ));
    }

    pub fn string(&self) -> Option<String> {
        Some(self.text.to_owned())
    }

    pub fn boolean(&mut self) -> Option<bool> {
        match parse_bool(self.text) {
            Some((value, legacy)) => {
                if legacy {
                    self.warnings.push(format!(
                        "option {:?}: deprecated boolean value {:?}, use {value:?}",
                        self.name, self.text
                    ));
                }
                Some(value)
            }
            None => {
                self.reject("\"true\" or \"false\"");
                None
            }
        }
    }

    /// An integer in `min..=max`; `expected` describes the range for warnings.
    pub fn integer(&mut self, min: i64, max: i64, expected: &str) -> Option<i64> {
        let parsed = self.text.parse::<i64>().ok().filter(|n| (min..=max).contains(n));
        if parsed.is_none() {
            self.reject(expected);
        }
        parsed
    }

    /// A 32-bit count of at least `min`.
    pub fn count(&mut self, min: u32) -> Option<u32> {
        let expected = format!("an integer from {min} to {}", i32::MAX);
        let n = self.integer(i64::from(min), i64::from(i32::MAX), &expected)?;
        u32::try_from(n).ok()
    }

    /// A 32-bit number of milliseconds of at least `min_ms`.
    pub fn millis(&mut self, min_ms: u32) -> Option<Duration> {
        self.count(min_ms).map(|ms| Duration::from_millis(u64::from(ms)))
    }

    pub fn parsed<T>(&mut self, parse: impl Fn(&str) -> Option<T>, expected: &str) -> Option<T> {
        let parsed = parse(self.text);
        if parsed.is_none() {
            self.reject(expected);
        }
        parsed
    }
}

pub(super) fn acknowledgment(v: &mut OptionValue<'_>) -> Option<Acknowledgment> {
    if let Ok(n) = v.text.parse::<i64>() {
        return match u32::try_from(n)
            .ok()
            .filter(|&n| i64::from(n) <= i64::from(i32::MAX))
        {
            Some(n) => Some(Acknowledgment::Nodes(n)),
            None => {
                v.reject("a non-negative integer or a write concern name");
                None
            }
        };
    }
    Some(match v.text {
        "majority" => Acknowledgment::Majority,
        name => Acknowledgment::Custom(name.to_owned()),
    })
}

/// Known compressors in order, without duplicates; unknown names are dropped
/// with a warning, as the compression spec asks.
pub(super) fn compressors(v: &mut OptionValue<'_>) -> Option<Vec<Compressor>> {
    let mut list = Vec::new();
    for name in v.text.split(',') {
        match Compressor::parse(name) {
            Some(c) if !list.contains(&c) => list.push(c),
            Some(_) => {}
            None => {
                v.dropped = true;
                v.warnings.push(format!(
                    "option \"compressors\": unsupported compressor {name:?} ignored"
                ));
            }
        }
    }
    (!list.is_empty()).then_some(list)
}

/// "dc:ny,rack:1". A malformed entry invalidates the whole set: a partial tag
/// set would select different servers than the user asked for.
pub(super) fn tag_set(text: &str) -> Option<TagSet> {
    text.split(',')
        .map(|entry| match entry.split_once(':') {
            Some((k, v)) if !k.is_empty() => Some((k.to_owned(), v.to_owned())),
            _ => None,
        })
        .collect()
}

/// "KEY:value,KEY2:value2", where a value may itself contain ':' (spec). A
/// value cannot contain ','; the spec's tests expect the entry cut off by
/// such a comma to be dropped with a warning, the rest kept. Entries are not
/// echoed: AWS_SESSION_TOKEN is a secret.
pub(super) fn mechanism_properties(v: &mut OptionValue<'_>) -> Option<AuthMechanismProperties> {
    let mut props = AuthMechanismProperties::default();
    for (i, entry) in v.text.split(',').enumerate() {
        match entry.split_once(':') {
            Some((key, value)) if !key.is_empty() => {
                if props.insert(key, value).is_some() {
                    v.warnings.push(format!(
                        "authMechanismProperties: {key:?} given more than once; the last value is used"
                    ));
                }
            }
            _ => {
                v.dropped = true;
                v.warnings.push(format!(
                    "authMechanismProperties: entry {} is not KEY:value and was ignored \
                     (values containing ',' cannot be given in a connection string)",
                    i + 1
                ));
            }
        }
    }
    (!props.is_empty()).then_some(props)
}

/// RFC 6335 section 5.1 service names: letters, digits and hyphens, at least
/// one letter, no leading, trailing or doubled hyphen. The seedlist spec
/// lifts the 15-character limit as long as the DNS label fits (62 + '_').
pub(super) fn srv_service_name(name: &str) -> Option<String> {
    let valid = (1..=62).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_alphabetic())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    valid.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_service_names() {
        assert!(srv_service_name("mongodb").is_some());
        assert!(srv_service_name("custom-name2").is_some());
        for bad in ["", "-a", "a-", "a--b", "123", "_mongodb", "a.b"] {
            assert!(srv_service_name(bad).is_none(), "{bad}");
        }
    }
}
