//! Shared by the benches (each is its own crate: `mod common;`).

use std::time::{Duration, Instant};

/// Median wall time of `runs` calls of `f`, after one warm-up call.
pub fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    f(); // warm-up
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}
