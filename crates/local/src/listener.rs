//! manuel-local's HTTP/1 listener, in place of `axum::serve`, which has no timeouts and no
//! connection cap: idle or slow connections could hold the server's file descriptors forever.
//!
//! - header-read timeout: a connection must send a request's whole header within
//!   `header_read_timeout`, or it is closed. hyper runs this timer whenever the connection
//!   waits for a request head, so it is also the idle timeout of a kept-alive connection;
//! - a connection cap: past `max_connections` open connections, a new one is accepted and
//!   closed at once, and the refusal is logged (at most once a second, with a count), so the
//!   server never runs out of descriptors and says why it refuses;
//! - accept errors (out of descriptors) are logged and retried after a pause, not fatal.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What one client connection may hold.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// The longest a connection may take to send a request's header, or stay idle between
    /// requests.
    pub header_read_timeout: Duration,
    /// Connections open at the same time, at most.
    pub max_connections: usize,
}

/// hyper's own bounds on a request head, above the server's (which answer 431 with the JSON
/// error body, see [`manuel_core::http`]): past them hyper answers a bare 431 itself, which is
/// logged here.
const HYPER_MAX_HEADERS: usize = 256;
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and lets open
/// connections finish their request (up to `drain`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(HYPER_MAX_HEADERS);
    let mut refusals = Refusals::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection; retrying shortly");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refusals.count(remote, limits.max_connections);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            let response = router.clone().oneshot(request.map(Body::new));
            async move { Ok::<_, Infallible>(response.await.unwrap_or_else(|never| match never {})) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                if error.is_parse_too_large() {
                    tracing::warn!(%remote, "request header too large; answered 431 and closed");
                } else if error.is_timeout() {
                    tracing::debug!(%remote, "connection closed: no complete request header in time");
                } else {
                    tracing::debug!(%remote, %error, "connection closed with an error");
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open at shutdown were dropped");
    }
}

/// Refused connections, logged at most once per [`REFUSAL_LOG_EVERY`].
#[derive(Default)]
struct Refusals {
    since_log: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    fn count(&mut self, remote: SocketAddr, max_connections: usize) {
        self.since_log += 1;
        if self
            .logged_at
            .is_some_and(|at| at.elapsed() < REFUSAL_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            %remote,
            max_connections,
            refused = self.since_log,
            "connection refused: the server is at its connection cap (MANUEL_MAX_CONNECTIONS)"
        );
        self.since_log = 0;
        self.logged_at = Some(Instant::now());
    }
}
