//! The load generator: the official Rust driver, N tasks sharing one `Client`, each in a
//! closed loop (send, wait for the reply, repeat) until a deadline.

use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::Res;

pub const DB: &str = "mongoplex_bench";
/// Pre-loaded with `_id` 0..preload, read by `find_one`.
pub const ITEMS: &str = "items";
/// Written by `insert_one` (the server assigns nothing; the driver adds an ObjectId).
pub const INSERTS: &str = "inserts";
const PAYLOAD: &str =
    "mongoplex benchmark payload: a hundred bytes of filler so documents are not trivially small......";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// `{ping: 1}`: the upstream does no work, so this is the proxy's overhead.
    Ping,
    FindOne,
    InsertOne,
    /// 90 % find_one, 10 % insert_one.
    Mix,
}

impl Workload {
    pub const ALL: [Workload; 4] = [Self::Ping, Self::FindOne, Self::InsertOne, Self::Mix];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::FindOne => "find_one",
            Self::InsertOne => "insert_one",
            Self::Mix => "mix",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| format!("unknown workload {s:?} (ping, find_one, insert_one, mix)"))
    }
}

/// A driver client whose pool fits `tasks` concurrent operations.
pub async fn client(uri: &str, tasks: usize) -> Res<Client> {
    let mut opts = ClientOptions::parse(uri).await?;
    opts.max_pool_size = Some(u32::try_from(tasks.max(1))?);
    opts.app_name = Some("mongoplex-bench".into());
    Ok(Client::with_options(opts)?)
}

/// Drops the benchmark database and loads `docs` documents into `items`.
pub async fn preload(uri: &str, docs: u64) -> Res<()> {
    let client = client(uri, 4).await?;
    let db = client.database(DB);
    db.drop().await?;
    let items: Collection<Document> = db.collection(ITEMS);
    let mut next = 0u64;
    while next < docs {
        let end = (next + 1000).min(docs);
        let batch: Vec<Document> = (next..end)
            .map(|i| -> Res<Document> {
                let id = i64::try_from(i)?;
                Ok(doc! { "_id": id, "name": format!("item-{i}"), "score": id, "payload": PAYLOAD })
            })
            .collect::<Res<_>>()?;
        items.insert_many(batch).await?;
        next = end;
    }
    client.shutdown().await;
    Ok(())
}

/// What one closed-loop run measured.
pub struct Samples {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Per successful operation, in nanoseconds, sorted.
    pub latencies_ns: Vec<u64>,
}

impl Samples {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q`-th quantile in microseconds, `q` in parts per 10,000 (9990 = p99.9).
    pub fn quantile_us(&self, q: usize) -> f64 {
        let n = self.latencies_ns.len();
        if n == 0 {
            return 0.0;
        }
        let idx = (n * q).div_ceil(10_000).clamp(1, n) - 1;
        self.latencies_ns[idx] as f64 / 1000.0
    }
}

struct Task {
    admin: Database,
    items: Collection<Document>,
    inserts: Collection<Document>,
    rng: StdRng,
    preload: u64,
    id: i64,
}

impl Task {
    async fn op(&mut self, w: Workload) -> Res<()> {
        let w = match w {
            Workload::Mix if self.rng.random_range(0..10) == 0 => Workload::InsertOne,
            Workload::Mix => Workload::FindOne,
            w => w,
        };
        match w {
            Workload::Ping => {
                self.admin.run_command(doc! { "ping": 1 }).await?;
            }
            Workload::FindOne => {
                let id = i64::try_from(self.rng.random_range(0..self.preload.max(1)))?;
                if self.items.find_one(doc! { "_id": id }).await?.is_none() {
                    return Err(format!("find_one: no document with _id {id} (was it pre-loaded?)").into());
                }
            }
            Workload::InsertOne | Workload::Mix => {
                self.inserts
                    .insert_one(doc! { "task": self.id, "payload": PAYLOAD })
                    .await?;
            }
        }
        Ok(())
    }
}

/// Runs `w` on `tasks` concurrent tasks for `duration`.
pub async fn drive(
    client: &Client,
    w: Workload,
    tasks: usize,
    duration: Duration,
    preload: u64,
    seed: u64,
) -> Res<Samples> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let id = u64::try_from(i)?;
        let db = client.database(DB);
        let mut task = Task {
            admin: client.database("admin"),
            items: db.collection(ITEMS),
            inserts: db.collection(INSERTS),
            rng: StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(id)),
            preload,
            id: i64::try_from(i)?,
        };
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let (mut errors, mut first_error) = (0u64, None);
            loop {
                let t = Instant::now();
                if t >= deadline {
                    break;
                }
                match task.op(w).await {
                    Ok(()) => lat.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut all = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for h in handles {
        let (lat, e, fe) = h.await?;
        all.extend(lat);
        errors += e;
        first_error = first_error.or(fe);
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    Ok(Samples {
        ops: u64::try_from(all.len())?,
        errors,
        first_error,
        elapsed,
        latencies_ns: all,
    })
}

/// Runs `n` operations of `w` one after another (for instruction counts).
pub async fn sequential(client: &Client, w: Workload, n: u64, preload: u64) -> Res<()> {
    let db = client.database(DB);
    let mut task = Task {
        admin: client.database("admin"),
        items: db.collection(ITEMS),
        inserts: db.collection(INSERTS),
        rng: StdRng::seed_from_u64(42),
        preload,
        id: 0,
    };
    for _ in 0..n {
        task.op(w).await?;
    }
    Ok(())
}
