//! Where a run's time went, phase by phase (the report's `timings`): whittle's own work
//! (`prepare`, `steps`, `write`) apart from tract's (`tract_load_*`, `run_*`, `differential`,
//! `latency`), so that a slow run says which side is slow. Wall-clock seconds; not part of the
//! fingerprint, and not deterministic.

use std::time::{Duration, Instant};

use serde::Serialize;

/// One phase and its wall-clock time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    pub phase: String,
    pub seconds: f64,
}

/// Accumulates phases in the order they first ran; a phase timed twice adds up.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    phases: Vec<Phase>,
}

impl Timings {
    /// Adds `elapsed` to `phase`.
    pub fn add(&mut self, phase: &str, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        match self.phases.iter_mut().find(|p| p.phase == phase) {
            Some(p) => p.seconds += seconds,
            None => self.phases.push(Phase { phase: phase.to_string(), seconds }),
        }
    }

    /// Adds the time since `start` to `phase`.
    pub fn since(&mut self, phase: &str, start: Instant) {
        self.add(phase, start.elapsed());
    }

    /// Runs `f`, timing it as `phase`.
    pub fn time<T>(&mut self, phase: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let value = f();
        self.since(phase, start);
        value
    }

    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_keep_first_order_and_add_up() {
        let mut t = Timings::default();
        t.add("b", Duration::from_millis(5));
        t.add("a", Duration::from_millis(1));
        t.add("b", Duration::from_millis(5));
        let names: Vec<_> = t.phases().iter().map(|p| p.phase.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert!((t.phases()[0].seconds - 0.010).abs() < 1e-9);
        assert_eq!(t.time("c", || 7), 7);
        assert_eq!(t.phases().len(), 3);
    }
}
