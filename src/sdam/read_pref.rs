//! Read preferences: parsing and validating a client's `$readPreference` document.
//!
//! Parsing checks the document's structure as mongos does (known mode, no tags or
//! maxStalenessSeconds with mode primary). The maxStalenessSeconds lower bounds depend on the
//! heartbeat frequency, so they are a separate check ([`ReadPreference::validate_max_staleness`]):
//! server selection applies it for replica sets as the spec says, and the request path, which
//! answers as a mongos, should apply it to every request.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bson::raw::{RawBsonRef, RawDocument, RawDocumentBuf};
use bson::{doc, Bson, Document};

/// How often an idle primary writes a no-op (idleWritePeriodMS).
pub const IDLE_WRITE_PERIOD: Duration = Duration::from_secs(10);
/// The smallest maxStalenessSeconds any deployment accepts (smallestMaxStalenessSeconds).
pub const SMALLEST_MAX_STALENESS: Duration = Duration::from_secs(90);

/// The read preference modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadMode {
    Primary,
    PrimaryPreferred,
    Secondary,
    SecondaryPreferred,
    Nearest,
}

impl ReadMode {
    /// The camel-case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::PrimaryPreferred => "primaryPreferred",
            Self::Secondary => "secondary",
            Self::SecondaryPreferred => "secondaryPreferred",
            Self::Nearest => "nearest",
        }
    }
}

impl fmt::Display for ReadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReadMode {
    type Err = ReadPrefError;

    /// Exact camel-case names only, as mongos accepts them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use ReadMode::*;
        [Primary, PrimaryPreferred, Secondary, SecondaryPreferred, Nearest]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ReadPrefError::UnknownMode(s.to_owned()))
    }
}

/// One tag set: a server matches when it carries every pair.
pub type TagSet = BTreeMap<String, String>;

/// A validated read preference. `hedge` is accepted and ignored (deprecated in 8.0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPreference {
    pub mode: ReadMode,
    /// Tried in order; empty means "any server" (like the default `[{}]`).
    pub tag_sets: Vec<TagSet>,
    /// `None` means no maximum (absent or -1 on the wire).
    pub max_staleness: Option<Duration>,
}

/// Why a read preference was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadPrefError {
    #[error("$readPreference is not a valid BSON document")]
    Malformed,
    #[error("$readPreference has no mode")]
    MissingMode,
    #[error("$readPreference has {0:?} more than once")]
    Duplicate(String),
    #[error("unknown read preference mode {0:?}")]
    UnknownMode(String),
    #[error("$readPreference field {field:?} should be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("only empty tag sets are allowed with read preference mode primary")]
    PrimaryWithTags,
    #[error("maxStalenessSeconds is not allowed with read preference mode primary")]
    PrimaryWithMaxStaleness,
    #[error("maxStalenessSeconds must be a non-negative integer or -1, got {0}")]
    BadMaxStaleness(i64),
    #[error("maxStalenessSeconds {max_staleness:?} is below the minimum {minimum:?}")]
    MaxStalenessTooSmall {
        max_staleness: Duration,
        minimum: Duration,
    },
}

impl ReadPreference {
    /// The default read preference.
    pub fn primary() -> Self {
        Self::with_mode(ReadMode::Primary)
    }

    pub fn with_mode(mode: ReadMode) -> Self {
        Self {
            mode,
            tag_sets: Vec::new(),
            max_staleness: None,
        }
    }

    /// Parses and validates a `$readPreference` document.
    pub fn from_document(doc: &Document) -> Result<Self, ReadPrefError> {
        let raw = RawDocumentBuf::try_from(doc).map_err(|_| ReadPrefError::Malformed)?;
        Self::from_raw(&raw)
    }

    /// Parses and validates a `$readPreference` document straight from request bytes.
    /// Unknown fields are ignored for forward compatibility.
    pub fn from_raw(doc: &RawDocument) -> Result<Self, ReadPrefError> {
        let mut mode = None;
        let mut tags = None;
        let mut max_staleness = None;
        for element in doc {
            let (key, value) = element.map_err(|_| ReadPrefError::Malformed)?;
            match key.as_str() {
                "mode" => set_once(&mut mode, "mode", parse_mode(value)?)?,
                "tags" => set_once(&mut tags, "tags", parse_tags(value)?)?,
                "maxStalenessSeconds" => set_once(
                    &mut max_staleness,
                    "maxStalenessSeconds",
                    parse_max_staleness(value)?,
                )?,
                "hedge" if value.as_document().is_none() => {
                    return Err(ReadPrefError::WrongType {
                        field: "hedge",
                        expected: "a document",
                    })
                }
                _ => {}
            }
        }
        let mode = mode.ok_or(ReadPrefError::MissingMode)?;
        let tag_sets: Vec<TagSet> = tags.unwrap_or_default();
        let max_staleness = max_staleness.flatten();
        if mode == ReadMode::Primary {
            if tag_sets.iter().any(|t| !t.is_empty()) {
                return Err(ReadPrefError::PrimaryWithTags);
            }
            if max_staleness.is_some() {
                return Err(ReadPrefError::PrimaryWithMaxStaleness);
            }
        }
        Ok(Self {
            mode,
            tag_sets,
            max_staleness,
        })
    }

    /// The spec's lower bounds on maxStalenessSeconds: at least 90 s and at least one
    /// heartbeat plus the idle write period.
    pub fn validate_max_staleness(&self, heartbeat_frequency: Duration) -> Result<(), ReadPrefError> {
        let Some(max_staleness) = self.max_staleness else {
            return Ok(());
        };
        let minimum = SMALLEST_MAX_STALENESS.max(heartbeat_frequency.saturating_add(IDLE_WRITE_PERIOD));
        if max_staleness < minimum {
            return Err(ReadPrefError::MaxStalenessTooSmall {
                max_staleness,
                minimum,
            });
        }
        Ok(())
    }

    /// The `$readPreference` document to forward to a mongos upstream.
    pub fn to_document(&self) -> Document {
        let mut out = doc! {"mode": self.mode.as_str()};
        if !self.tag_sets.is_empty() {
            let tags: Vec<Bson> = self
                .tag_sets
                .iter()
                .map(|t| {
                    Bson::Document(
                        t.iter()
                            .map(|(k, v)| (k.clone(), Bson::String(v.clone())))
                            .collect(),
                    )
                })
                .collect();
            out.insert("tags", tags);
        }
        if let Some(ms) = self.max_staleness {
            out.insert(
                "maxStalenessSeconds",
                i64::try_from(ms.as_secs()).unwrap_or(i64::MAX),
            );
        }
        out
    }
}

fn set_once<T>(slot: &mut Option<T>, field: &str, value: T) -> Result<(), ReadPrefError> {
    if slot.replace(value).is_some() {
        return Err(ReadPrefError::Duplicate(field.to_owned()));
    }
    Ok(())
}

fn parse_mode(value: RawBsonRef<'_>) -> Result<ReadMode, ReadPrefError> {
    value
        .as_str()
        .ok_or(ReadPrefError::WrongType {
            field: "mode",
            expected: "a string",
        })?
        .parse()
}

fn parse_tags(value: RawBsonRef<'_>) -> Result<Vec<TagSet>, ReadPrefError> {
    let wrong = ReadPrefError::WrongType {
        field: "tags",
        expected: "an array of documents of strings",
    };
    let array = value.as_array().ok_or_else(|| wrong.clone())?;
    let mut out = Vec::new();
    for item in array {
        let set = item.map_err(|_| ReadPrefError::Malformed)?;
        let set = set.as_document().ok_or_else(|| wrong.clone())?;
        let mut tags = TagSet::new();
        for pair in set {
            let (k, v) = pair.map_err(|_| ReadPrefError::Malformed)?;
            let v = v.as_str().ok_or_else(|| wrong.clone())?;
            tags.insert(k.as_str().to_owned(), v.to_owned());
        }
        out.push(tags);
    }
    Ok(out)
}

/// `-1` means "no maximum"; other negative values are errors.
fn parse_max_staleness(value: RawBsonRef<'_>) -> Result<Option<Duration>, ReadPrefError> {
    let secs = match value {
        RawBsonRef::Int32(i) => i64::from(i),
        RawBsonRef::Int64(i) => i,
        RawBsonRef::Double(d) => {
            super::hello::int_value(&Bson::Double(d)).ok_or(ReadPrefError::WrongType {
                field: "maxStalenessSeconds",
                expected: "an integer",
            })?
        }
        _ => {
            return Err(ReadPrefError::WrongType {
                field: "maxStalenessSeconds",
                expected: "an integer",
            })
        }
    };
    match secs {
        -1 => Ok(None),
        s => u64::try_from(s)
            .map(|s| Some(Duration::from_secs(s)))
            .map_err(|_| ReadPrefError::BadMaxStaleness(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_documents() {
        let cases = [
            (doc! {"mode": "primary"}, ReadMode::Primary, 0, None),
            (doc! {"mode": "primary", "tags": [{}]}, ReadMode::Primary, 1, None),
            (
                doc! {"mode": "primary", "maxStalenessSeconds": -1},
                ReadMode::Primary,
                0,
                None,
            ),
            (
                doc! {"mode": "secondary", "tags": [{"dc": "ny"}, {}], "maxStalenessSeconds": 120_i64},
                ReadMode::Secondary,
                2,
                Some(120),
            ),
            (
                doc! {"mode": "nearest", "maxStalenessSeconds": 90.0},
                ReadMode::Nearest,
                0,
                Some(90),
            ),
            (
                doc! {"mode": "secondaryPreferred", "hedge": {"enabled": true}, "x": 1},
                ReadMode::SecondaryPreferred,
                0,
                None,
            ),
            (
                doc! {"mode": "primaryPreferred", "maxStalenessSeconds": 0},
                ReadMode::PrimaryPreferred,
                0,
                Some(0),
            ),
        ];
        for (d, mode, tags, staleness) in cases {
            let rp = ReadPreference::from_document(&d).unwrap_or_else(|e| panic!("{d}: {e}"));
            assert_eq!(rp.mode, mode, "{d}");
            assert_eq!(rp.tag_sets.len(), tags, "{d}");
            assert_eq!(rp.max_staleness, staleness.map(Duration::from_secs), "{d}");
        }
    }

    #[test]
    fn rejects_invalid_documents() {
        let cases = [
            doc! {},
            doc! {"mode": "Primary"},
            doc! {"mode": "fastest"},
            doc! {"mode": 1},
            doc! {"mode": "primary", "tags": [{"dc": "ny"}]},
            doc! {"mode": "primary", "maxStalenessSeconds": 100},
            doc! {"mode": "nearest", "maxStalenessSeconds": -2},
            doc! {"mode": "nearest", "maxStalenessSeconds": "100"},
            doc! {"mode": "nearest", "maxStalenessSeconds": 1.5},
            doc! {"mode": "nearest", "tags": {"dc": "ny"}},
            doc! {"mode": "nearest", "tags": [1]},
            doc! {"mode": "nearest", "tags": [{"dc": 1}]},
            doc! {"mode": "nearest", "hedge": true},
        ];
        for d in cases {
            assert!(ReadPreference::from_document(&d).is_err(), "{d}");
        }
        let mut dup = RawDocumentBuf::new();
        dup.append(bson::cstr!("mode"), "nearest");
        dup.append(bson::cstr!("mode"), "secondary");
        assert_eq!(
            ReadPreference::from_raw(&dup),
            Err(ReadPrefError::Duplicate("mode".into()))
        );
        assert_eq!(
            // A string element claiming 16 bytes inside a 12-byte document.
            ReadPreference::from_raw(
                RawDocument::from_bytes(&[12, 0, 0, 0, 2, b'm', 0, 16, 0, 0, 0, 0]).unwrap()
            ),
            Err(ReadPrefError::Malformed)
        );
    }

    #[test]
    fn max_staleness_bounds() {
        let hb = Duration::from_secs(10);
        let with = |s: u64| ReadPreference {
            max_staleness: Some(Duration::from_secs(s)),
            ..ReadPreference::with_mode(ReadMode::Nearest)
        };
        assert!(ReadPreference::primary().validate_max_staleness(hb).is_ok());
        assert!(with(90).validate_max_staleness(hb).is_ok());
        assert!(with(89).validate_max_staleness(hb).is_err());
        assert!(with(0).validate_max_staleness(hb).is_err());
        assert!(with(129)
            .validate_max_staleness(Duration::from_secs(120))
            .is_err());
        assert!(with(130).validate_max_staleness(Duration::from_secs(120)).is_ok());
    }

    #[test]
    fn round_trips_through_a_document() {
        let d = doc! {"mode": "secondary", "tags": [{"dc": "ny"}], "maxStalenessSeconds": 120_i64};
        let rp = ReadPreference::from_document(&d).unwrap();
        assert_eq!(ReadPreference::from_document(&rp.to_document()).unwrap(), rp);
    }
}
