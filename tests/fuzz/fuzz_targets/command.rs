//! The command-field peek over one BSON document: `Command::parse` as for a client's
//! command, `ReplyInfo::parse` and the label check as for a server's reply, and the
//! mongos rewrite of a member's error (`translate::as_mongos`), whose output must be a
//! document again.
#![no_main]

use bson::RawDocument;
use libfuzzer_sys::fuzz_target;
use mongoplex::command::{translate, Command, ReplyInfo};

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = RawDocument::from_bytes(data) else {
        return;
    };
    let cmd = Command::parse(doc);
    let _ = cmd.is_retryable_write();
    let spec = cmd.known.spec();
    let _ = spec.retryable_read(None);
    let info = ReplyInfo::parse(doc);
    let labelled = ReplyInfo::has_label(doc, "RetryableWriteError");
    for add in [None, Some("TransientTransactionError")] {
        let Some(out) = translate::as_mongos(doc, "db1.example.test:27017", add) else {
            continue;
        };
        let out = RawDocument::from_bytes(&out).expect("the rewrite is a document");
        let after = ReplyInfo::parse(out);
        assert_eq!(after.ok, info.ok);
        if labelled {
            assert!(
                ReplyInfo::has_label(out, "RetryableWriteError"),
                "labels pass through"
            );
        }
        if let Some(label) = add {
            assert!(ReplyInfo::has_label(out, label));
        }
    }
});
