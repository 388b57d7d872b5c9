//! File descriptors. Containers often start processes with a soft RLIMIT_NOFILE of 1024
//! under a much higher hard limit. At start-up the proxy raises its soft limit to the
//! hard one. Whatever the limit then is, a reserve is kept for what must still work when
//! clients have taken the rest: upstream connections and monitors, the admin endpoint,
//! refusals. Past `soft - reserve` open clients, newcomers are refused with an error
//! that says so ([`crate::session::refuse`]), instead of every accept failing with
//! EMFILE and the admin endpoint going dark.

use crate::config::Config;

/// The process's RLIMIT_NOFILE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub soft: u64,
    pub hard: u64,
}

/// Reads the limit.
pub fn current() -> std::io::Result<NoFile> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    Ok(NoFile { soft, hard })
}

/// Raises the soft limit to the hard one; returns the limits before and after.
pub fn raise() -> std::io::Result<(NoFile, NoFile)> {
    let before = current()?;
    if before.soft < before.hard {
        rlimit::setrlimit(rlimit::Resource::NOFILE, before.hard, before.hard)?;
    }
    Ok((before, current()?))
}

/// Descriptors kept for everything but clients: per member, its pools and monitors;
/// plus the listeners, the admin endpoint and its scrapes, refusals in progress, and
/// files the process opens. The set may grow past its seed list, so at least three
/// members are counted.
pub fn reserve(config: &Config) -> usize {
    const OTHER: usize = 128;
    // maxPoolSize 0 means unlimited: count the drivers' default.
    let pool = match config.pool.max_size {
        0 => 100,
        n => n,
    };
    let per_member = pool + config.long_poll_pool_size + 2;
    config.seeds.len().max(3) * per_member + crate::session::refuse::MAX_REFUSING + OTHER
}

/// How many clients may be open at once, and what bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// `max_client_connections`.
    Configured(usize),
    /// The descriptor limit, less the reserve, is lower.
    Descriptors { clients: usize, soft: u64 },
}

impl Capacity {
    pub fn clients(self) -> usize {
        match self {
            Self::Configured(n) | Self::Descriptors { clients: n, .. } => n,
        }
    }
}

/// The client capacity under a soft descriptor limit (pure).
pub fn capacity(configured: usize, soft: u64, reserve: usize) -> Capacity {
    let room = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserve);
    if room < configured {
        Capacity::Descriptors { clients: room, soft }
    } else {
        Capacity::Configured(configured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_the_lower_of_the_setting_and_the_descriptors_left() {
        let cases = [
            (10_000, 20_000, 500, Capacity::Configured(10_000)),
            (10_000, 10_500, 500, Capacity::Configured(10_000)),
            (
                10_000,
                1024,
                300,
                Capacity::Descriptors {
                    clients: 724,
                    soft: 1024,
                },
            ),
            (
                10_000,
                100,
                300,
                Capacity::Descriptors {
                    clients: 0,
                    soft: 100,
                },
            ),
            (50, u64::MAX, 300, Capacity::Configured(50)),
        ];
        for (configured, soft, reserve, want) in cases {
            assert_eq!(
                capacity(configured, soft, reserve),
                want,
                "{configured} {soft} {reserve}"
            );
        }
    }

    #[test]
    fn reserve_counts_pools_of_at_least_three_members() {
        let mut config = Config::validate(crate::config::Settings::default()).unwrap();
        config.pool.max_size = 8;
        config.long_poll_pool_size = 16;
        // One seed, counted as three members of (8 + 16 + 2), plus refusals and the rest.
        assert_eq!(reserve(&config), 3 * 26 + 64 + 128);
        config.pool.max_size = 0;
        assert_eq!(reserve(&config), 3 * 118 + 64 + 128);
    }
}
