//! Background upkeep for one pool: evict perished idle connections and keep
//! minPoolSize connections open.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Grant, Pool};

const TICK: Duration = Duration::from_millis(500);

pub(super) async fn run(pool: Pool, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        evict(&pool);
        fill(&pool, &cancel).await;
    }
    pool.close();
}

fn evict(pool: &Pool) {
    let inner = &pool.inner;
    let (idle_timeout, dead) = {
        let mut st = inner.lock();
        let now = Instant::now();
        let mut dead = st.take_perished(now);
        // Parked connections the server closed (EOF) or that sent unsolicited bytes.
        let (alive, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut st.idle)
            .into_iter()
            .partition(|c| c.looks_alive());
        st.idle = alive;
        st.total -= gone.len();
        let idle_timeout = dead.len();
        dead.extend(gone);
        if !dead.is_empty() {
            inner.grant_waiters(&mut st);
        }
        (idle_timeout, dead)
    };
    let (timed_out, errored): (Vec<_>, Vec<_>) = {
        let mut v = dead;
        let errored = v.split_off(idle_timeout);
        (v, errored)
    };
    inner.close_all(timed_out, "idle");
    inner.close_all(errored, "error");
}

/// Opens connections until minPoolSize is reached, respecting maxConnecting.
async fn fill(pool: &Pool, cancel: &CancellationToken) {
    let inner = &pool.inner;
    loop {
        let grant = {
            let mut st = inner.lock();
            if !st.ready || st.closed || st.total >= st.opts.min_size || !st.waiters.is_empty() {
                return;
            }
            match st.try_grant() {
                Some(Grant::Connect) => Grant::Connect,
                Some(other) => {
                    st.undo_grant(other);
                    return;
                }
                None => return,
            }
        };
        // Dropping take_grant's future on cancellation gives the slot back.
        let conn = tokio::select! {
            _ = cancel.cancelled() => return,
            c = inner.take_grant(grant, None) => c,
        };
        match conn {
            // Opened as "in use"; returning it parks it as idle.
            Ok(Some(conn)) => inner.check_in(conn),
            _ => return,
        }
    }
}
