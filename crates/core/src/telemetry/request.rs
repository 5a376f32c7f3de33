//! Per-request metrics and the request log line.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::{Metric, function_name, record_many, take_cold_start};
use crate::request_id::current_request_id;

/// The `code` of an error response, left in the response's extensions by `ApiError` so that
/// refusals can be counted by kind.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

/// Counts every request (`Requests`, `Latency`, `ClientErrors`, `ServerErrors`, `QuotaExceeded`,
/// `RateLimited`, `ColdStart`) and logs one line per request, inside a span that carries the
/// request id and function name so every log line of the request can be found by either.
/// Runs inside the request id layer.
pub async fn request_telemetry(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let cold_start = take_cold_start();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = current_request_id().unwrap_or_default(),
        function = function_name().unwrap_or("manuel-local"),
    );
    async move {
        let response = next.run(request).await;
        let status = response.status();
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let code = response.extensions().get::<ErrorCode>().map(|code| code.0);
        let flag = |condition: bool| if condition { 1.0 } else { 0.0 };
        record_many(&[
            (Metric::Requests, 1.0),
            (Metric::Latency, duration_ms),
            (Metric::ClientErrors, flag(status.is_client_error())),
            (Metric::ServerErrors, flag(status.is_server_error())),
            (Metric::QuotaExceeded, flag(code == Some("quota_exceeded"))),
            (Metric::RateLimited, flag(code == Some("rate_limited"))),
        ]);
        tracing::info!(
            method = %method,
            path,
            status = status.as_u16(),
            duration_ms,
            cold_start,
            "request finished"
        );
        response
    }
    .instrument(span)
    .await
}
