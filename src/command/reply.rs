//! The top-level fields of a server reply that state tracking and pinning need.

use bson::RawDocument;

use super::{as_i64, truthy};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplyInfo<'a> {
    pub ok: bool,
    pub code: Option<i32>,
    pub code_name: Option<&'a str>,
    pub errmsg: Option<&'a str>,
    /// The code of a `writeConcernError`, which also signals state changes.
    pub write_concern_code: Option<i32>,
    pub write_concern_errmsg: Option<&'a str>,
    /// `cursor.id` of a cursor-returning reply: 0 means exhausted.
    pub cursor_id: Option<i64>,
    pub topology_version: Option<&'a RawDocument>,
    pub has_labels: bool,
}

impl<'a> ReplyInfo<'a> {
    pub fn parse(body: &'a RawDocument) -> Self {
        let mut r = ReplyInfo::default();
        // Only the keys below have their values decoded; a reply's payload (documents,
        // $clusterTime, operationTime) is skipped over.
        for el in body.iter_elements() {
            let Ok(el) = el else { break };
            let value = || el.value().ok();
            match el.key().as_str() {
                "ok" => r.ok = value().is_some_and(truthy),
                "code" => r.code = value().and_then(as_i64).and_then(|c| i32::try_from(c).ok()),
                "codeName" => r.code_name = value().and_then(|v| v.as_str()),
                "errmsg" => r.errmsg = value().and_then(|v| v.as_str()),
                "errorLabels" => r.has_labels = true,
                "topologyVersion" => r.topology_version = value().and_then(|v| v.as_document()),
                "writeConcernError" => {
                    if let Some(wce) = value().and_then(|v| v.as_document()) {
                        r.write_concern_code = wce
                            .get("code")
                            .ok()
                            .flatten()
                            .and_then(as_i64)
                            .and_then(|c| i32::try_from(c).ok());
                        r.write_concern_errmsg = wce.get_str("errmsg").ok();
                    }
                }
                "cursor" => {
                    r.cursor_id = value()
                        .and_then(|v| v.as_document())
                        .and_then(|c| c.get("id").ok().flatten())
                        .and_then(as_i64);
                }
                _ => {}
            }
        }
        r
    }

    /// Whether the reply carries the given error label.
    pub fn has_label(body: &RawDocument, label: &str) -> bool {
        body.get_array("errorLabels")
            .map(|a| {
                a.into_iter()
                    .any(|l| l.ok().and_then(|l| l.as_str()) == Some(label))
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn reads_error_and_cursor_fields() {
        let d = rawdoc! {
            "ok": 0.0, "code": 10107, "codeName": "NotWritablePrimary", "errmsg": "not primary",
            "errorLabels": ["RetryableWriteError"],
        };
        let r = ReplyInfo::parse(&d);
        assert!(!r.ok);
        assert_eq!(r.code, Some(10107));
        assert!(ReplyInfo::has_label(&d, "RetryableWriteError"));
        assert!(!ReplyInfo::has_label(&d, "TransientTransactionError"));
        let d = rawdoc! { "cursor": { "id": 55_i64, "ns": "a.b", "firstBatch": [] }, "ok": 1 };
        let r = ReplyInfo::parse(&d);
        assert!(r.ok);
        assert_eq!(r.cursor_id, Some(55));
        let d = rawdoc! { "ok": 1, "writeConcernError": { "code": 11602, "errmsg": "x" } };
        assert_eq!(ReplyInfo::parse(&d).write_concern_code, Some(11602));
    }
}
