//! The average round trip time a monitor keeps per server (exponentially weighted, alpha 0.2).

use std::time::Duration;

/// Moving average of hello round trip times. The monitor owns one per server, feeds it every
/// successful check's RTT, passes [`RttEstimator::average`] to
/// [`super::ServerDescription::from_hello`], and resets it when a check fails (an Unknown
/// server has no RTT, and the next sample starts the average afresh).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttEstimator {
    average: Option<Duration>,
}

impl RttEstimator {
    pub fn new() -> Self {
        Self::default()
    }

    /// An estimator that already holds `average` (for restoring or testing).
    pub fn with_average(average: Option<Duration>) -> Self {
        Self { average }
    }

    /// Adds a sample and returns the new average: the first sample is the average, after
    /// that `0.2 * sample + 0.8 * average`, computed in integer nanoseconds.
    pub fn add_sample(&mut self, sample: Duration) -> Duration {
        let next = match self.average {
            None => sample,
            Some(old) => {
                let nanos = (sample.as_nanos() + 4 * old.as_nanos()) / 5;
                u64::try_from(nanos).map_or(Duration::MAX, Duration::from_nanos)
            }
        };
        self.average = Some(next);
        next
    }

    pub fn average(&self) -> Option<Duration> {
        self.average
    }

    pub fn reset(&mut self) {
        self.average = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_average() {
        let ms = Duration::from_millis;
        let cases = [
            (None, ms(5), ms(5)),
            (None, ms(0), ms(0)),
            (Some(ms(0)), ms(5), ms(1)),
            (Some(ms(10)), ms(5), ms(9)),
            (Some(ms(1)), ms(1000), Duration::from_micros(200_800)),
        ];
        for (old, sample, want) in cases {
            let mut e = RttEstimator::with_average(old);
            assert_eq!(e.add_sample(sample), want, "{old:?} + {sample:?}");
            assert_eq!(e.average(), Some(want));
        }
        let mut e = RttEstimator::with_average(Some(Duration::MAX));
        assert_eq!(
            e.add_sample(Duration::MAX),
            Duration::MAX,
            "saturates instead of panicking"
        );
        e.reset();
        assert_eq!(e.average(), None);
    }
}
