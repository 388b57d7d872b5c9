//! The fault schedule: an election every 2 minutes and a member kill (restarted later)
//! every 5 minutes in the 30-minute run, compressed for shorter runs (but never below
//! one election per 20 s and one kill per 45 s, so the 2-minute run has 5 and 2).

use std::time::{Duration, Instant};

use crate::common::replset::ReplSet;

#[derive(Debug, Clone)]
pub struct Event {
    /// Seconds since the soak began.
    pub t: f64,
    /// `election`, `kill` or `restart`.
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Elect,
    Kill,
    Restart,
}

/// (offset from the start of the load, action), sorted.
fn schedule(run: Duration) -> Vec<(Duration, Action)> {
    let scale = run.as_secs_f64() / 1800.0;
    let every_election = Duration::from_secs_f64((120.0 * scale).max(20.0));
    let every_kill = Duration::from_secs_f64((300.0 * scale).max(45.0));
    let downtime = every_kill / 5;
    let mut plan = Vec::new();
    let mut t = every_election;
    while t + every_election / 2 <= run {
        plan.push((t, Action::Elect));
        t += every_election;
    }
    let mut t = every_kill + every_election / 4;
    while t + downtime + Duration::from_secs(5) <= run {
        plan.push((t, Action::Kill));
        plan.push((t + downtime, Action::Restart));
        t += every_kill;
    }
    plan.sort_by_key(|(t, _)| *t);
    plan
}

/// A member other than `not` that is up (not killed), after `not` in order.
fn next_up(rs: &ReplSet, not: usize, down: Option<usize>) -> usize {
    (1..rs.len())
        .map(|k| (not + k) % rs.len())
        .find(|&j| Some(j) != down)
        .expect("a member is up")
}

/// Runs the schedule from `load_start`; `soak_start` is the clock of the recorded events.
/// Kills alternate between the primary (then another member is elected) and a secondary.
pub async fn run(rs: &ReplSet, run_for: Duration, soak_start: Instant, load_start: Instant) -> Vec<Event> {
    let mut events = Vec::new();
    let mut down: Option<usize> = None;
    let mut kills = 0;
    for (at, action) in schedule(run_for) {
        tokio::time::sleep_until((load_start + at).into()).await;
        let t = soak_start.elapsed().as_secs_f64();
        let primary = rs.primary();
        let (kind, detail) = match action {
            Action::Elect => {
                let from = primary.unwrap_or(0);
                let to = next_up(rs, from, down);
                if primary.is_some() {
                    rs.step_down_and_elect(from, to, Duration::from_millis(300)).await;
                } else {
                    rs.elect(to);
                }
                ("election", format!("{from}->{to}"))
            }
            Action::Kill => {
                let p = primary.unwrap_or(0);
                let victim = if kills % 2 == 0 { p } else { next_up(rs, p, None) };
                kills += 1;
                rs.kill(victim).await;
                down = Some(victim);
                if victim == p {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let to = next_up(rs, p, down);
                    rs.elect(to);
                    ("kill", format!("primary {victim}, elected {to}"))
                } else {
                    ("kill", format!("secondary {victim}"))
                }
            }
            Action::Restart => {
                let i = down.take().expect("a killed member");
                rs.restart(i).await;
                ("restart", format!("{i}"))
            }
        };
        println!("SOAK t={t:.1}s {kind} {detail}");
        events.push(Event { t, kind, detail });
    }
    events
}

#[test]
fn the_schedule_scales_with_the_run() {
    let count = |run: u64, kind: fn(&Action) -> bool| {
        schedule(Duration::from_secs(run))
            .iter()
            .filter(|(_, a)| kind(a))
            .count()
    };
    let elect = |a: &Action| matches!(a, Action::Elect);
    let kill = |a: &Action| matches!(a, Action::Kill);
    assert_eq!((count(1800, elect), count(1800, kill)), (14, 5));
    assert_eq!((count(120, elect), count(120, kill)), (5, 2));
}
