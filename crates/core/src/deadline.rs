//! When the platform stops the current invocation (Lambda's deadline). Work that waits on a
//! slow dependency stops before it, so the client gets an answer instead of a gateway timeout.

use std::future::Future;
use std::time::{Duration, SystemTime};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static CURRENT: Deadline;
}

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

/// Runs `work` with `deadline` as the [`current`] one (nothing changes for `None`).
pub async fn within<F: Future>(deadline: Option<Deadline>, work: F) -> F::Output {
    match deadline {
        Some(deadline) => CURRENT.scope(deadline, work).await,
        None => work.await,
    }
}

/// The deadline of the invocation this task serves, if the platform set one.
pub fn current() -> Option<Deadline> {
    CURRENT.try_with(|deadline| *deadline).ok()
}

/// Whether `needed` more time fits before the current deadline, keeping `margin` for answering
/// (always true where no deadline is set).
pub fn leaves_time_for(needed: Duration, margin: Duration) -> bool {
    current().is_none_or(|deadline| deadline.remaining(margin) > needed)
}

/// Middleware: the request's [`Deadline`] extension becomes the [`current`] deadline while it
/// is handled, so retries deep in an adapter can see how much time is left.
pub async fn scope(request: Request, next: Next) -> Response {
    let deadline = request.extensions().get::<Deadline>().copied();
    within(deadline, next.run(request)).await
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
