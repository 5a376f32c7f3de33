//! Percentiles of a sample of durations.

use std::time::Duration;

use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub samples: usize,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Summary {
    /// Sorts `timings` and takes nearest-rank percentiles (an empty sample is all zeros).
    pub fn of(timings: &mut [Duration]) -> Self {
        timings.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let rank = |p: f64| -> f64 {
            if timings.is_empty() {
                return 0.0;
            }
            let index = ((p / 100.0) * timings.len() as f64).ceil() as usize;
            us(timings[index.clamp(1, timings.len()) - 1])
        };
        let total: f64 = timings.iter().copied().map(us).sum();
        Self {
            samples: timings.len(),
            min_us: rank(0.0),
            p50_us: rank(50.0),
            p90_us: rank(90.0),
            p99_us: rank(99.0),
            max_us: rank(100.0),
            mean_us: if timings.is_empty() {
                0.0
            } else {
                total / timings.len() as f64
            },
        }
    }
}
