//! The run's time limit (`--timeout`): checked between phases, after every step and before every
//! sample, and around tract's loads, which cannot be interrupted: a load that overruns the limit
//! is left to finish on its own thread (its result dropped) while the run reports the timeout.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::data::InputShape;
use crate::verify::{self, Runnable, VerifyError};

/// When a run must end.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    limit: Duration,
}

/// The limit ran out during `during`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut {
    pub during: String,
}

impl Deadline {
    pub fn new(limit: Duration) -> Deadline {
        Deadline { start: Instant::now(), limit }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    pub fn expired(&self) -> bool {
        self.start.elapsed() >= self.limit
    }

    fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.start.elapsed())
    }

    /// `Err` once the limit has run out, naming what was about to start.
    pub fn check(deadline: Option<&Deadline>, during: &str) -> Result<(), TimedOut> {
        match deadline {
            Some(d) if d.expired() => Err(TimedOut { during: during.to_string() }),
            _ => Ok(()),
        }
    }
}

/// [`verify::load_model`] within the deadline. Without a deadline it loads on this thread.
pub fn load_model(
    deadline: Option<&Deadline>,
    bytes: &[u8],
    shapes: &[InputShape],
    during: &str,
) -> Result<Result<Runnable, VerifyError>, TimedOut> {
    let Some(d) = deadline else { return Ok(verify::load_model(bytes, shapes)) };
    Deadline::check(deadline, during)?;
    let (send, receive) = mpsc::channel();
    let (bytes, shapes) = (bytes.to_vec(), shapes.to_vec());
    std::thread::spawn(move || {
        // The receiver is gone when the run timed out: the result is dropped with the thread.
        let _ = send.send(verify::load_model(&bytes, &shapes));
    });
    receive.recv_timeout(d.remaining()).map_err(|_| TimedOut { during: during.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_and_load_respect_the_limit() {
        let d = Deadline::new(Duration::ZERO);
        assert_eq!(Deadline::check(Some(&d), "x"), Err(TimedOut { during: "x".into() }));
        assert_eq!(Deadline::check(None, "x"), Ok(()));
        assert!(load_model(Some(&d), b"not onnx", &[], "loading").is_err());
        let long = Deadline::new(Duration::from_secs(3600));
        assert!(!long.expired());
        // Within the limit: tract's own verdict comes back.
        assert!(matches!(load_model(Some(&long), b"not onnx", &[], "loading"), Ok(Err(_))));
    }
}
