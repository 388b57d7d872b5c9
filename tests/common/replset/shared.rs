//! The state every member task shares, and the one way tasks wait on it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::time::Instant;

use super::state::SetState;

pub struct Shared {
    /// A std mutex: it is never held across an `.await`.
    state: Mutex<SetState>,
    /// Bumped after every change to `state`; tasks that wait for a condition subscribe
    /// first, then check, then wait for the next bump.
    changed: watch::Sender<u64>,
    /// The SecantusDB every member forwards to.
    pub upstream: SocketAddr,
    next_reply_id: AtomicI32,
    /// Per member: commands hold it (shared) while their upstream round trip runs, and
    /// `kill` takes it exclusively before dropping sockets, so a killed member's writes
    /// are applied before it dies, as a crashed mongod's acknowledged-or-not writes are
    /// settled before a new primary serves the retry. (SecantusDB, unlike mongod, does not
    /// serialize one session's operations, so a retry racing the original could run too.)
    pub storage_gates: Vec<tokio::sync::RwLock<()>>,
}

impl Shared {
    pub fn new(state: SetState, upstream: SocketAddr) -> Arc<Self> {
        let storage_gates = (0..state.members.len())
            .map(|_| tokio::sync::RwLock::new(()))
            .collect();
        Arc::new(Self {
            storage_gates,
            state: Mutex::new(state),
            changed: watch::channel(0).0,
            upstream,
            next_reply_id: AtomicI32::new(1),
        })
    }

    /// The state, for reading. A panicking test thread must not wedge the members, so a
    /// poisoned lock is used as is.
    pub fn lock(&self) -> MutexGuard<'_, SetState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the state and wakes every waiter.
    pub fn update<R>(&self, f: impl FnOnce(&mut SetState) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        r
    }

    /// A fresh requestID for a reply the harness writes.
    pub fn reply_id(&self) -> i32 {
        let id = self.next_reply_id.fetch_add(1, Ordering::Relaxed);
        if id <= 0 {
            self.next_reply_id.store(2, Ordering::Relaxed);
            1
        } else {
            id
        }
    }

    /// Waits until `ready` holds; false when `deadline` came first.
    pub async fn wait_until(&self, ready: impl Fn(&SetState) -> bool, deadline: Option<Instant>) -> bool {
        let mut rx = self.changed.subscribe();
        loop {
            if ready(&self.lock()) {
                return true;
            }
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        _ = rx.changed() => {}
                        _ = tokio::time::sleep_until(deadline) => return ready(&self.lock()),
                    }
                }
                // `self` owns the sender, so `changed` cannot fail while we borrow it.
                None => {
                    let _ = rx.changed().await;
                }
            }
        }
    }

    /// Holds a partitioned member's work until it is healed.
    pub async fn wait_reachable(&self, member: usize) {
        self.wait_until(|s| !s.member(member).partitioned, None).await;
    }
}

/// Counts one command in its member's `in_flight` until dropped, which also happens when
/// a kill cancels the connection task.
pub struct InFlight {
    shared: Arc<Shared>,
    member: usize,
}

impl InFlight {
    pub fn enter(shared: &Arc<Shared>, member: usize) -> Self {
        shared.update(|s| s.member_mut(member).in_flight += 1);
        Self {
            shared: Arc::clone(shared),
            member,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let member = self.member;
        self.shared.update(|s| {
            let m = s.member_mut(member);
            m.in_flight = m.in_flight.saturating_sub(1);
        });
    }
}
