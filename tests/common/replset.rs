//! A simulated replica set with several members, for tests that need failover, secondaries
//! or stale primaries: no peer here replicates (see ../shared/PEERS.md).
//!
//! Each member is a tokio listener on its own 127.0.0.1 port, running on the test's
//! runtime. Members answer hello themselves, with one consistent view of the set named
//! [`SET_NAME`], modelled on the SDAM spec and mongod: hosts, primary, me, setVersion,
//! electionId (primary only, grows with each election), topologyVersion (its counter bumps
//! on each change of that member; a restart brings a new processId), lastWrite, and an
//! awaitable hello that streams with `moreToCome` under `exhaustAllowed`.
//! Every other command goes, after the role rules, to ONE shared SecantusDB, so
//! "replication" is instant and retryable-write dedupe (lsid + txnNumber) spans members.
//!
//! Role rules ([`rules`]), checked before forwarding:
//! - a write, or any command with `autocommit: false`, on a non-primary: 10107
//!   NotWritablePrimary; labelled RetryableWriteError for retryable writes and for
//!   commit/abortTransaction, TransientTransactionError for other transaction commands.
//! - a read without a non-primary `$readPreference` on a secondary: 13435.
//! - a command admitted only because the member is primary (writes, primary reads) that
//!   is still held ([`ReplSet::set_latency`]) or running when the member steps down: 11602
//!   InterruptedDueToReplStateChange. A write interrupted during the upstream round trip
//!   has been applied; one interrupted during the hold has not.
//! - a getMore on a member other than the one that opened the cursor, or after that member
//!   was killed: 43 CursorNotFound (SecantusDB's cursors are global; mongod's are not).
//! - an unacknowledged (moreToCome) command a member refuses, or interrupts at a step-down
//!   while holding it: it closes the connection (mongod answers no moreToCome request).
//!
//! Not modelled: compression (hello never offers it), auth, tags, hidden members and
//! arbiters, and automatic elections (nothing happens unless a test calls a control).
//!
//! Controls: [`ReplSet::step_down`], [`ReplSet::elect`], [`ReplSet::step_down_and_elect`],
//! [`ReplSet::reconfig`], [`ReplSet::kill`] / [`ReplSet::restart`] (same port),
//! [`ReplSet::partition`] / [`ReplSet::heal`], [`ReplSet::bring_back_stale_primary`],
//! [`ReplSet::set_latency`], [`ReplSet::set_lag`]. Roles change only through these: killing
//! the primary elects nobody (call `elect`), and a restarted member comes back a secondary.
//!
//! Counters per member ([`ReplSet::stats`]): commands forwarded by name, rejections by
//! code, hello replies, connections; [`ReplSet::in_flight`] counts commands not yet
//! answered. [`raw::RawClient`] talks to one member with no driver in between;
//! [`driver::client`] builds a Rust-driver client whose [`driver::DriverView`] shows what
//! the driver believes about each member.
//!
//! ```ignore
//! mod common;
//! use common::{peers::Secantus, replset::ReplSet};
//! use std::time::Duration;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn failover() {
//!     let upstream = Secantus::start();
//!     let rs = ReplSet::start(3, &upstream).await;
//!     let client = mongodb::Client::with_uri_str(rs.uri()).await.unwrap();
//!     // ... write; then:
//!     rs.step_down_and_elect(0, 1, Duration::from_millis(200)).await;
//!     // ... the next write lands on member 1:
//!     assert_eq!(rs.stats(1).forwarded("insert"), 1);
//! }
//! ```

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

mod conn;
pub mod driver;
pub mod hello;
pub mod raw;
pub mod rules;
mod shared;
pub mod state;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bson::oid::ObjectId;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::peers::Secantus;
#[allow(unused_imports)] // each test binary uses a different subset
pub use raw::{RawClient, RawReply};
use shared::Shared;
use state::SetState;
#[allow(unused_imports)]
pub use state::{MemberStats, Role, SET_NAME};

/// How long `restart` keeps trying to bind the old port again.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `kill` and `shutdown` wait for member tasks to finish.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// One run of a member's listener, from start or restart to kill.
struct Life {
    /// Cancelling it ends the accept loop and every connection task of this run.
    token: CancellationToken,
    /// The accept loop and the connection tasks of this run, so `kill` can wait for all of
    /// their sockets to be closed.
    tracker: TaskTracker,
}

/// The running set. Dropping it stops every member; [`ReplSet::shutdown`] also waits.
pub struct ReplSet {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    /// `None` while the member is killed.
    lives: Vec<Mutex<Option<Life>>>,
    /// Parent of every life's token.
    root: CancellationToken,
    /// Every task of every member, for `shutdown`.
    tasks: TaskTracker,
}

impl ReplSet {
    /// Starts `n` members forwarding to `upstream`; member 0 is primary.
    pub async fn start(n: usize, upstream: &Secantus) -> Self {
        Self::start_with_upstream(n, upstream.addr()).await
    }

    /// Like [`ReplSet::start`], forwarding to any MongoDB-wire server.
    pub async fn start_with_upstream(n: usize, upstream: SocketAddr) -> Self {
        assert!(n > 0, "a replica set needs at least one member");
        let mut listeners = Vec::with_capacity(n);
        for _ in 0..n {
            let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a member listener");
            listeners.push(listener);
        }
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("listener address"))
            .collect();
        let hosts = addrs.iter().map(ToString::to_string).collect();
        let set = Self {
            shared: Shared::new(SetState::new(hosts), upstream),
            addrs,
            lives: (0..n).map(|_| Mutex::new(None)).collect(),
            root: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            set.spawn_member(i, listener);
        }
        set
    }

    fn spawn_member(&self, i: usize, listener: TcpListener) {
        let life = Life {
            token: self.root.child_token(),
            tracker: TaskTracker::new(),
        };
        let accept = accept_loop(
            i,
            listener,
            Arc::clone(&self.shared),
            life.token.clone(),
            life.tracker.clone(),
            self.tasks.clone(),
        );
        tokio::spawn(self.tasks.track_future(life.tracker.track_future(accept)));
        *self.life(i) = Some(life);
    }

    fn life(&self, i: usize) -> std::sync::MutexGuard<'_, Option<Life>> {
        self.lives
            .get(i)
            .unwrap_or_else(|| panic!("the set has {} members; there is no member {i}", self.lives.len()))
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ----- addresses -----

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// `"127.0.0.1:PORT"`, as the member appears in `hosts`.
    pub fn host(&self, i: usize) -> String {
        self.addrs[i].to_string()
    }

    /// `mongodb://h0,h1,.../?replicaSet=rs0`; append options with `&`.
    pub fn uri(&self) -> String {
        let all: Vec<usize> = (0..self.len()).collect();
        self.uri_with_seeds(&all)
    }

    /// A replica-set URI that names only `seeds`: the client must discover the rest.
    pub fn uri_with_seeds(&self, seeds: &[usize]) -> String {
        let hosts: Vec<String> = seeds.iter().map(|&i| self.host(i)).collect();
        format!("mongodb://{}/?replicaSet={SET_NAME}", hosts.join(","))
    }

    /// `mongodb://hi/?directConnection=true`: one member, no discovery.
    pub fn direct_uri(&self, i: usize) -> String {
        format!("mongodb://{}/?directConnection=true", self.host(i))
    }

    // ----- state -----

    /// The real primary (a stale primary is not one).
    pub fn primary(&self) -> Option<usize> {
        self.shared.lock().primary
    }

    pub fn role(&self, i: usize) -> Role {
        self.shared.lock().member(i).role
    }

    /// `(processId, counter)`.
    pub fn topology_version(&self, i: usize) -> (ObjectId, i64) {
        self.shared.lock().member(i).topology_version()
    }

    /// The current primary's electionId (the latest election's).
    pub fn election_id(&self) -> ObjectId {
        state::election_id(self.shared.lock().term)
    }

    pub fn set_version(&self) -> i32 {
        self.shared.lock().set_version
    }

    /// Commands member `i` has admitted for forwarding and not answered yet: held by
    /// [`ReplSet::set_latency`] or waiting on SecantusDB.
    pub fn in_flight(&self, i: usize) -> u64 {
        self.shared.lock().member(i).in_flight
    }

    /// A snapshot of the member's counters (cumulative over restarts).
    pub fn stats(&self, i: usize) -> MemberStats {
        self.shared.lock().member(i).stats.clone()
    }

    /// Zeroes every member's counters.
    pub fn reset_stats(&self) {
        self.shared.update(|s| {
            for m in &mut s.members {
                m.stats = MemberStats::default();
            }
        });
    }

    // ----- controls -----

    /// The primary `i` becomes a secondary; the set has no primary until [`ReplSet::elect`].
    /// Commands it admitted as primary and has not answered yet get 11602.
    pub fn step_down(&self, i: usize) {
        self.shared.update(|s| s.step_down(i));
    }

    /// Member `j` wins a new election (a larger electionId); all others become secondaries.
    pub fn elect(&self, j: usize) {
        self.shared.update(|s| s.elect(j));
    }

    /// `step_down(i)`, `gap` without a primary, then `elect(j)`.
    pub async fn step_down_and_elect(&self, i: usize, j: usize, gap: Duration) {
        self.step_down(i);
        tokio::time::sleep(gap).await;
        self.elect(j);
    }

    /// A new configuration: setVersion grows on every member.
    pub fn reconfig(&self) {
        self.shared.update(SetState::reconfig);
    }

    /// Member `i` claims to be primary with an electionId and setVersion older than the
    /// current primary's (its own last term's, if it had one), until the next `elect`.
    pub fn bring_back_stale_primary(&self, i: usize) {
        self.shared.update(|s| s.bring_back_stale_primary(i));
    }

    /// Member `i` holds every forwarded command for `latency` before sending it on.
    pub fn set_latency(&self, i: usize, latency: Duration) {
        self.shared.update(|s| s.member_mut(i).latency = latency);
    }

    /// Member `i` reports a `lastWrite.lastWriteDate` `lag` behind the others (for
    /// maxStalenessSeconds).
    pub fn set_lag(&self, i: usize, lag: Duration) {
        self.shared.update(|s| s.member_mut(i).lag = lag);
    }

    /// Member `i` goes silent: it keeps accepting and keeps its sockets open, but answers
    /// nothing, hello included, until [`ReplSet::heal`]. Held requests are answered then.
    pub fn partition(&self, i: usize) {
        self.shared.update(|s| s.member_mut(i).partitioned = true);
    }

    pub fn heal(&self, i: usize) {
        self.shared.update(|s| s.member_mut(i).partitioned = false);
    }

    /// Member `i` closes its listener and every socket (its clients see EOF; new
    /// connections are refused). Returns once all of them are closed. Roles do not change.
    pub async fn kill(&self, i: usize) {
        // Let upstream round trips already under way finish first (see Shared::storage_gates).
        let _settled = self.shared.storage_gates[i].write().await;
        let life = self.life(i).take();
        self.shared.update(|s| s.kill(i));
        if let Some(life) = life {
            life.token.cancel();
            life.tracker.close();
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, life.tracker.wait())
                .await
                .is_err()
            {
                panic!("kill({i}): the member's tasks still run {SHUTDOWN_TIMEOUT:?} after cancellation");
            }
        }
    }

    /// Member `i` listens again on the same port, as a secondary with a new processId.
    pub async fn restart(&self, i: usize) {
        assert!(
            self.life(i).is_none(),
            "restart({i}): member {i} is running; kill it first"
        );
        let deadline = tokio::time::Instant::now() + REBIND_TIMEOUT;
        let listener = loop {
            match bind(self.addrs[i]) {
                Ok(listener) => break listener,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("restart({i}): cannot listen on {} again: {e}", self.addrs[i]),
            }
        };
        self.shared.update(|s| s.restart(i));
        self.spawn_member(i, listener);
    }

    /// Stops every member and waits (up to 5 s) for their tasks to end.
    pub async fn shutdown(self) {
        self.root.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, self.tasks.wait()).await;
    }
}

impl Drop for ReplSet {
    fn drop(&mut self) {
        // Every task selects on a child of `root`, so they all end (and drop their
        // sockets) at their next poll.
        self.root.cancel();
    }
}

/// SO_REUSEADDR, so `restart` can take the port back while old connections linger in
/// TIME_WAIT.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    member: usize,
    listener: TcpListener,
    shared: Arc<Shared>,
    token: CancellationToken,
    life: TaskTracker,
    all: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let token = token.clone();
        let serve = conn::serve(member, Arc::clone(&shared), stream);
        let task = async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = serve => {}
            }
        };
        tokio::spawn(all.track_future(life.track_future(task)));
    }
}
