//! Server selection at run time: the pure rules from [`crate::sdam`], waiting for
//! topology changes up to serverSelectionTimeoutMS — or, for primary-bound requests
//! while no primary is known, through the failover buffer.

use std::time::Instant;

use super::failover::{Evict, Ticket};
use super::Topology;
use crate::address::ServerAddress;
use crate::pool::Pool;
use crate::router::Criteria;
use crate::sdam::{
    self, ReadMode, ReadPreference, SelectionCriteria, SelectionError, MIN_HEARTBEAT_FREQUENCY,
};

/// Why no member could be selected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SelectError {
    #[error(
        "no member matches {criteria} after {waited_ms} ms (serverSelectionTimeoutMS); topology: {summary}"
    )]
    Timeout {
        criteria: String,
        waited_ms: u128,
        summary: String,
    },
    #[error("no primary available after {waited_ms} ms ({}); topology: {summary}", reason_text(*.reason))]
    NoPrimary {
        reason: Evict,
        waited_ms: u128,
        summary: String,
    },
    /// The request's maxTimeMS ran out before a member could be selected.
    #[error("no member matched {criteria} within the request's maxTimeMS (waited {waited_ms} ms); topology: {summary}")]
    Expired {
        criteria: String,
        waited_ms: u128,
        summary: String,
    },
    #[error("invalid read preference: {0}")]
    InvalidReadPreference(String),
    #[error("{0}")]
    Incompatible(String),
    #[error("mongoplex is shutting down")]
    ShuttingDown,
}

fn reason_text(e: Evict) -> &'static str {
    match e {
        Evict::Window => "failover buffer window elapsed",
        Evict::BufferFull => "failover buffer full",
        Evict::MaxDuration => "failover lasted longer than failover_max_duration_ms",
        Evict::MaxTime => "the request's maxTimeMS elapsed",
    }
}

/// A selected member and its pool.
#[derive(Debug, Clone)]
pub struct Selected {
    pub address: ServerAddress,
    pub pool: Pool,
}

impl Topology {
    fn criteria(&self, c: &Criteria) -> Result<SelectionCriteria, SelectError> {
        match c {
            Criteria::Primary => Ok(SelectionCriteria::Write),
            Criteria::Read(raw) => {
                let rp = ReadPreference::from_raw(raw)
                    .map_err(|e| SelectError::InvalidReadPreference(e.to_string()))?;
                rp.validate_max_staleness(self.config().heartbeat_frequency)
                    .map_err(|e| SelectError::InvalidReadPreference(e.to_string()))?;
                Ok(SelectionCriteria::Read(rp))
            }
        }
    }

    /// Picks a member. Primary-bound requests wait in the failover buffer while no
    /// primary is known (unless `buffer` is false, e.g. inside a transaction, where they
    /// fail at once); other requests wait up to serverSelectionTimeoutMS.
    ///
    /// `avoid` is a member that just failed at the connection level: it is not chosen
    /// again until the topology has changed (its monitor confirmed or dropped it).
    ///
    /// `budget` is the end of the request's maxTimeMS: no wait outlasts it.
    pub async fn select(
        &self,
        criteria: &Criteria,
        buffer: bool,
        mut avoid: Option<ServerAddress>,
        budget: Option<Instant>,
    ) -> Result<Selected, SelectError> {
        let sc = self.criteria(criteria)?;
        if avoid.is_none() {
            // The common case: a suitable member is known. No clock, no subscription.
            let snap = self.snapshot();
            if let Ok(Some(sel)) = self.pick(&snap.desc, &sc) {
                return Ok(sel);
            }
        }
        let primary_bound = match &sc {
            SelectionCriteria::Write => true,
            SelectionCriteria::Read(rp) => rp.mode == ReadMode::Primary,
        };
        let started = Instant::now();
        let cfg = self.config();
        let within_budget = |d: Instant| budget.map_or(d, |b| b.min(d));
        let mut deadline = within_budget(started + cfg.server_selection_timeout);
        let mut ticket: Option<Ticket> = None;
        let mut rx = self.subscribe();
        let mut next_check = started;
        loop {
            let snap = rx.borrow_and_update().clone();
            match self.pick(&snap.desc, &sc) {
                Ok(Some(sel)) if avoid.as_ref() == Some(&sel.address) => {
                    // Wait for this member's own description to change: its monitor
                    // either confirms it (then use it) or drops it (then pick again).
                    let seen = member_version(&snap.desc, &sel.address);
                    self.request_check(avoid.as_ref());
                    let changed = rx.wait_for(|s| member_version(&s.desc, &sel.address) != seen);
                    tokio::select! {
                        _ = self.cancelled().cancelled() => return Err(SelectError::ShuttingDown),
                        r = tokio::time::timeout_at(deadline.into(), changed) => {
                            if r.is_err() {
                                // Nothing changed in time: trust the topology after all.
                                return Ok(sel);
                            }
                        }
                    }
                    avoid = None;
                    continue;
                }
                Ok(Some(sel)) => {
                    if ticket.is_some() {
                        self.inner.failover.drained();
                    }
                    return Ok(sel);
                }
                Ok(None) => {}
                Err(SelectionError::Incompatible(e)) => return Err(SelectError::Incompatible(e)),
                Err(SelectionError::ReadPreference(e)) => {
                    return Err(SelectError::InvalidReadPreference(e.to_string()))
                }
            }
            if primary_bound && ticket.is_none() {
                let no_primary = |reason| SelectError::NoPrimary {
                    reason,
                    waited_ms: started.elapsed().as_millis(),
                    summary: snap.summary(),
                };
                if !buffer {
                    return Err(no_primary(Evict::Window));
                }
                let f = &cfg.failover;
                let t = self
                    .inner
                    .failover
                    .admit(f.buffer_window, f.max_duration, f.max_buffered)
                    .map_err(no_primary)?;
                deadline = within_budget(t.deadline);
                ticket = Some(t);
            }
            // SDAM: a selection that finds nothing requests an immediate check, and again
            // every minHeartbeatFrequencyMS while it waits, so a member that comes back
            // is used within about that, not at its next heartbeat.
            let now = Instant::now();
            if now >= next_check {
                self.request_check(None);
                next_check = now + MIN_HEARTBEAT_FREQUENCY;
            }
            tokio::select! {
                _ = self.cancelled().cancelled() => return Err(SelectError::ShuttingDown),
                r = tokio::time::timeout_at(deadline.min(next_check).into(), rx.changed()) => {
                    match r {
                        Ok(Ok(())) => continue,
                        Ok(Err(_)) => return Err(SelectError::ShuttingDown),
                        // Time for another check, not yet the deadline.
                        Err(_) if Instant::now() < deadline => continue,
                        Err(_) => {}
                    }
                    let snap = self.snapshot();
                    let waited_ms = started.elapsed().as_millis();
                    if budget.is_some_and(|b| b <= Instant::now()) {
                        if ticket.is_some() {
                            self.inner.failover.evict(Evict::MaxTime);
                        }
                        let criteria = criteria_name(criteria);
                        return Err(SelectError::Expired { criteria, waited_ms, summary: snap.summary() });
                    }
                    if ticket.is_some() {
                        let reason = if self.inner.failover.past_max_duration(cfg.failover.max_duration) { Evict::MaxDuration } else { Evict::Window };
                        self.inner.failover.evict(reason);
                        return Err(SelectError::NoPrimary { reason, waited_ms, summary: snap.summary() });
                    }
                    return Err(SelectError::Timeout { criteria: criteria_name(criteria), waited_ms, summary: snap.summary() });
                }
            }
        }
    }

    fn pick(
        &self,
        desc: &sdam::TopologyDescription,
        sc: &SelectionCriteria,
    ) -> Result<Option<Selected>, SelectionError> {
        let window = sdam::select(desc, sc)?;
        let in_use = |a: &ServerAddress| {
            self.pool(a)
                .map_or(0, |p| u64::try_from(p.snapshot().in_use).unwrap_or(u64::MAX))
        };
        let chosen = sdam::choose_in_window(&window, in_use, &mut rand::rng());
        Ok(chosen.and_then(|sd| {
            self.pool(&sd.address).map(|pool| Selected {
                address: sd.address.clone(),
                pool,
            })
        }))
    }
}

/// What identifies one observation of a member: its type, when it was last checked, and
/// its error.
fn member_version(
    desc: &sdam::TopologyDescription,
    address: &ServerAddress,
) -> Option<(sdam::ServerType, Option<std::time::Duration>, Option<String>)> {
    desc.server(address)
        .map(|sd| (sd.server_type, sd.last_update_time, sd.error.clone()))
}

fn criteria_name(c: &Criteria) -> String {
    match c {
        Criteria::Primary => "primary".into(),
        Criteria::Read(rp) => format!("read preference {:?}", rp.get_str("mode").unwrap_or("?")),
    }
}
