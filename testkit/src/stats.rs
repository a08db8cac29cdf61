//! Percentiles, and the figures the benchmark reports of a sample.

use serde::{Deserialize, Serialize};

/// The `p`-th (0 to 1) of `sorted` by nearest rank: the element at `(len - 1) * p`, rounded.
/// Panics when `sorted` is empty.
pub fn nearest_rank<T: Copy>(sorted: &[T], p: f64) -> T {
    let last = sorted.len() - 1;
    sorted[((last as f64 * p).round() as usize).min(last)]
}

/// The `p`-th percentile (0 to 1) of `samples`, in any order (see [`nearest_rank`]).
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    nearest_rank(&sorted, p)
}

/// A measured figure: p50/p99 (latencies), median and min-max (runs), and every sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Stats {
    /// The figures of `samples` (at least one).
    pub fn of(samples: &[f64]) -> Self {
        Self {
            p50: percentile(samples, 0.5),
            p99: percentile(samples, 0.99),
            median: percentile(samples, 0.5),
            min: percentile(samples, 0.0),
            max: percentile(samples, 1.0),
            samples: samples.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_rounds_the_index() {
        let samples = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&samples, 0.0), 1.0);
        assert_eq!(percentile(&samples, 0.5), 3.0);
        assert_eq!(percentile(&samples, 0.99), 5.0);
        assert_eq!(percentile(&samples, 0.6), 3.0); // index 2.4 rounds to 2
        assert_eq!(percentile(&samples, 0.65), 4.0); // index 2.6 rounds to 3
        let stats = Stats::of(&samples);
        assert_eq!((stats.min, stats.median, stats.max), (1.0, 3.0, 5.0));
        assert_eq!(stats.samples, samples);
    }
}
