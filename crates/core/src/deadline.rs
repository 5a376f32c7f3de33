//! When the platform stops the current invocation (Lambda's deadline). Work that waits on a
//! slow dependency stops before it, so the client gets an answer instead of a gateway timeout.

use std::time::{Duration, SystemTime};

/// A request extension the Lambda adapter sets; absent locally, where nothing cuts a request off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(pub SystemTime);

impl Deadline {
    /// Time left before the deadline, less `margin` kept for answering; zero once it is past.
    pub fn remaining(&self, margin: Duration) -> Duration {
        self.0
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_keeps_the_margin_and_never_goes_negative() {
        let soon = Deadline(SystemTime::now() + Duration::from_secs(10));
        let left = soon.remaining(Duration::from_secs(2));
        assert!(left <= Duration::from_secs(8) && left > Duration::from_secs(7));
        let past = Deadline(SystemTime::now() - Duration::from_secs(1));
        assert_eq!(past.remaining(Duration::ZERO), Duration::ZERO);
    }
}
