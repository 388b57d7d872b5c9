//! Member errors as a mongos reports them. A driver that believes it talks to a mongos
//! treats a state-change code (NotWritablePrimary, NodeIsRecovering, ShutdownInProgress
//! …) as news about the mongos itself: it marks the "mongos" Unknown and, for the
//! shutdown codes, clears its whole pool to it. The proxy has already dealt with the
//! member (SDAM marked it, retries ran where they were safe), so every app reconnecting
//! would be pure harm. Such codes, at the top level or in a `writeConcernError`, reach
//! the client as the mongos routing code HostUnreachable (6), with the member's code and
//! message kept in `errmsg`. Error labels pass through exactly as the member gave them
//! (RetryableWriteError stays where the server put it), and the member's
//! `topologyVersion` is dropped: it describes the member, not the proxy.

use bson::{Document, RawDocument};

use super::ReplyInfo;
use crate::errors::ErrorCode;
use crate::sdam::classify_error;

/// The reply rewritten for the client, or `None` when it carries no state-change code.
/// `add_label` is appended to `errorLabels` when not already present (the transient
/// label for a transaction statement), forcing a rewrite. The decision is made on the
/// raw reply; only a reply that changes is converted and re-encoded.
pub fn as_mongos(body: &RawDocument, member: &str, add_label: Option<&str>) -> Option<Vec<u8>> {
    let info = ReplyInfo::parse(body);
    let top_level = !info.ok && classify_error(info.code, info.errmsg.unwrap_or("")).is_some();
    let wce_code = info.write_concern_code;
    let in_wce = classify_error(wce_code, info.write_concern_errmsg.unwrap_or("")).is_some();
    let add_label = add_label.filter(|l| !ReplyInfo::has_label(body, l));
    if !top_level && !in_wce && add_label.is_none() {
        return None;
    }
    let mut doc = Document::try_from(body).ok()?;
    if top_level {
        hide_state_change(&mut doc, info.code, member);
    }
    if in_wce {
        if let Ok(wce) = doc.get_document_mut("writeConcernError") {
            hide_state_change(wce, wce_code, member);
        }
    }
    if top_level || in_wce {
        doc.remove("topologyVersion");
    }
    if let Some(label) = add_label {
        let mut labels = doc.get_array("errorLabels").cloned().unwrap_or_default();
        labels.push(label.into());
        doc.insert("errorLabels", labels);
    }
    doc.to_vec().ok()
}

/// Replaces the state-change `code` of `doc` (a reply or a writeConcernError).
fn hide_state_change(doc: &mut Document, code: Option<i32>, member: &str) {
    let errmsg = doc.get_str("errmsg").unwrap_or("").to_owned();
    let name = doc.get_str("codeName").unwrap_or("").to_owned();
    let what = match code {
        Some(c) => format!("{name}({c})"),
        None => "a state-change error".to_owned(),
    };
    let routing = ErrorCode::HostUnreachable;
    doc.insert("code", routing.code());
    doc.insert("codeName", routing.name());
    doc.insert(
        "errmsg",
        format!("mongoplex: member {member} replied {what}: {errmsg}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{rawdoc, Bson};

    fn rewrite(body: &bson::RawDocumentBuf, label: Option<&str>) -> Option<Document> {
        as_mongos(body, "m1:27017", label).map(|b| Document::from_reader(&mut b.as_slice()).unwrap())
    }

    #[test]
    fn state_change_codes_become_routing_codes_and_labels_stay() {
        for code in [10107, 13435, 10058, 11600, 91, 11602, 13436, 189] {
            let body = rawdoc! {
                "ok": 0.0, "code": code, "codeName": "X", "errmsg": "not primary",
                "errorLabels": ["RetryableWriteError"], "topologyVersion": { "processId": bson::oid::ObjectId::new(), "counter": 1_i64 },
            };
            let d = rewrite(&body, None).expect("rewritten");
            assert_eq!(d.get_i32("code").unwrap(), 6, "{code}");
            assert_eq!(d.get_str("codeName").unwrap(), "HostUnreachable");
            assert!(d.get_str("errmsg").unwrap().contains(&format!("X({code})")));
            assert_eq!(
                d.get_array("errorLabels").unwrap(),
                &vec![Bson::from("RetryableWriteError")]
            );
            assert!(d.get("topologyVersion").is_none());
            let wce = rawdoc! { "ok": 1, "n": 1, "writeConcernError": { "code": code, "errmsg": "w" } };
            let d = rewrite(&wce, None).expect("wce rewritten");
            assert_eq!(
                d.get_document("writeConcernError")
                    .unwrap()
                    .get_i32("code")
                    .unwrap(),
                6
            );
            assert!(d.get("errorLabels").is_none(), "no label invented");
            assert_eq!(d.get_i32("n").unwrap(), 1);
        }
    }

    #[test]
    fn other_errors_pass_untouched_unless_a_label_is_added() {
        let dup = rawdoc! { "ok": 0.0, "code": 11000, "errmsg": "dup" };
        assert!(rewrite(&dup, None).is_none());
        let ok = rawdoc! { "ok": 1.0, "code": 10107 };
        assert!(rewrite(&ok, None).is_none(), "a code on ok:1 is not an error");
        let legacy = rawdoc! { "ok": 0.0, "errmsg": "not master" };
        assert_eq!(rewrite(&legacy, None).unwrap().get_i32("code").unwrap(), 6);
        let d = rewrite(&dup, Some("TransientTransactionError")).unwrap();
        assert_eq!(d.get_i32("code").unwrap(), 11000);
        assert_eq!(d.get_array("errorLabels").unwrap().len(), 1);
        let labelled = rawdoc! { "ok": 0.0, "code": 11000, "errorLabels": ["TransientTransactionError"] };
        assert!(rewrite(&labelled, Some("TransientTransactionError")).is_none());
    }
}
