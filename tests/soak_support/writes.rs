//! Writes that can be checked for exactly-once: every write has a unique `_id`
//! (`<writer>-<seq>`), its writer's name and its sequence number, and a counter `n`.
//! Even sequence numbers insert `{n: 1}`; odd ones upsert with `$inc: {n: 1}`. A write
//! applied twice shows as `n: 2` (the upsert) or as a DuplicateKey error reaching the
//! client (the insert: its `_id` was already there), so both are looked for.

use std::collections::HashMap;

use mongodb::bson::{doc, Bson, Document};
use mongodb::{Client, Collection};
use serde::Deserialize;

pub const DB: &str = "soak";
pub const COLL: &str = "writes";

/// What one writer did, as the Rust tasks record it and the scripts print it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WriterReport {
    pub writer: String,
    /// Sequence numbers 0..attempts were tried, one write each, in order.
    pub attempts: u64,
    /// (seq, error) for every write that returned an error; every other one was acked.
    pub errors: Vec<(u64, String)>,
    #[serde(default)]
    pub cursor_reads: u64,
    #[serde(default)]
    pub cursor_errors: Vec<String>,
    #[serde(default)]
    pub clients: u64,
}

/// One checked write through `coll`.
pub async fn write(coll: &Collection<Document>, writer: &str, seq: u64) -> Result<(), String> {
    let id = format!("{writer}-{seq}");
    let seq_i = i64::try_from(seq).expect("small sequence number");
    let res = if seq.is_multiple_of(2) {
        let d = doc! { "_id": &id, "w": writer, "seq": seq_i, "n": 1 };
        coll.insert_one(d).await.map(|_| ())
    } else {
        coll.update_one(
            doc! { "_id": &id },
            doc! { "$inc": { "n": 1 }, "$set": { "w": writer, "seq": seq_i } },
        )
        .upsert(true)
        .await
        .map(|_| ())
    };
    res.map_err(|e| {
        let s = e.to_string();
        s[..s.len().min(300)].to_string()
    })
}

#[derive(Debug, Default)]
pub struct Check {
    pub writes: u64,
    pub acked: u64,
    pub errored: u64,
    /// Errored writes found stored (once): applied, but the client heard an error.
    pub errored_stored: u64,
    /// Acknowledged but absent.
    pub missing: Vec<String>,
    /// Stored with n > 1, or a DuplicateKey error: applied twice.
    pub duplicated: Vec<String>,
    /// Stored but never attempted (a sequence number past the writer's last).
    pub phantoms: Vec<String>,
}

fn num(d: &Document, key: &str) -> Option<i64> {
    match d.get(key)? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        _ => None,
    }
}

/// Reads every checked write back from the shared SecantusDB (`direct`, not through the
/// proxy) and compares it with what the writers were told.
pub async fn check(direct: &Client, reports: &[WriterReport]) -> Check {
    use futures::TryStreamExt;
    let coll = direct.database(DB).collection::<Document>(COLL);
    let docs: Vec<Document> = coll
        .find(doc! {})
        .projection(doc! { "w": 1, "seq": 1, "n": 1 })
        .batch_size(10_000)
        .await
        .expect("find the writes")
        .try_collect()
        .await
        .expect("read the writes");
    // writer -> seq -> n
    let mut stored: HashMap<String, HashMap<i64, i64>> = HashMap::new();
    for d in &docs {
        let w = d.get_str("w").unwrap_or("?").to_string();
        let (seq, n) = (num(d, "seq").unwrap_or(-1), num(d, "n").unwrap_or(0));
        stored.entry(w).or_default().insert(seq, n);
    }
    let mut c = Check::default();
    for r in reports {
        let errored: HashMap<u64, &str> = r.errors.iter().map(|(s, e)| (*s, e.as_str())).collect();
        let mine = stored.remove(&r.writer).unwrap_or_default();
        for seq in 0..r.attempts {
            let id = format!("{}-{seq}", r.writer);
            let n = mine.get(&i64::try_from(seq).expect("small")).copied();
            c.writes += 1;
            match (errored.get(&seq), n) {
                (_, Some(n)) if n > 1 => c.duplicated.push(format!("{id} stored with n={n}")),
                (Some(e), _) if e.contains("11000") || e.contains("E11000") => {
                    c.duplicated.push(format!("{id}: {e}"))
                }
                (Some(_), Some(_)) => {
                    c.errored += 1;
                    c.errored_stored += 1
                }
                (Some(_), None) => c.errored += 1,
                (None, Some(_)) => c.acked += 1,
                (None, None) => {
                    c.acked += 1;
                    c.missing.push(id)
                }
            }
        }
        let attempts = i64::try_from(r.attempts).expect("small");
        for seq in mine.keys().filter(|s| **s < 0 || **s >= attempts) {
            c.phantoms.push(format!("{}-{seq}", r.writer));
        }
    }
    for (w, seqs) in stored {
        c.phantoms
            .push(format!("{} documents of unknown writer {w}", seqs.len()));
    }
    c
}
