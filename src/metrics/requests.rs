//! Request counters resolved once per (command, outcome), so the hot path does no label
//! lookups.

use prometheus::{Histogram, IntCounter};

use super::Metrics;
use crate::command::CommandName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server replied ok: 1.
    Ok,
    /// The server replied with an error.
    ServerError,
    /// The proxy answered with its own error (selection, pool, network).
    ProxyError,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::ServerError, Outcome::ProxyError];

    fn index(self) -> usize {
        match self {
            Self::Ok => 0,
            Self::ServerError => 1,
            Self::ProxyError => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ServerError => "server_error",
            Self::ProxyError => "proxy_error",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestMetrics {
    counters: Vec<[IntCounter; 3]>,
    durations: Vec<Histogram>,
}

impl RequestMetrics {
    pub fn new(m: &Metrics) -> Self {
        let counters = CommandName::ALL
            .iter()
            .map(|c| Outcome::ALL.map(|o| m.requests.with_label_values(&[c.as_str(), o.as_str()])))
            .collect();
        let durations = CommandName::ALL
            .iter()
            .map(|c| m.request_duration.with_label_values(&[c.as_str()]))
            .collect();
        Self { counters, durations }
    }

    fn index(c: CommandName) -> usize {
        CommandName::ALL
            .iter()
            .position(|x| *x == c)
            .unwrap_or(CommandName::ALL.len() - 1)
    }

    pub fn record(&self, c: CommandName, outcome: Outcome, seconds: f64) {
        let i = Self::index(c);
        self.counters[i][outcome.index()].inc();
        self.durations[i].observe(seconds);
    }
}
