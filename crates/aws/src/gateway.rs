//! What API Gateway already knows about a request, handed to the core middleware: its request
//! id (becomes ours), the caller's `sourceIp` (for the allowlist and rate limits) and the
//! Cognito authorizer's claims (used when `VERIFY_JWT` is off), and the invocation's deadline. It also takes the stage name
//! off the path (`/Prod/api/manuals` → `/api/manuals`), which lambda_http keeps for REST APIs,
//! keeping the path as requested for signature checks ([`RequestedPath`]).
//! [`behind_api_gateway`] puts it in front of a whole app.

use axum::Router;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderName, HeaderValue, Request, Uri};
use lambda_http::request::RequestContext;
use manuel_core::auth::GatewayClaims;
use manuel_core::deadline::Deadline;
use manuel_core::request_id::UpstreamRequestId;
use manuel_core::security::{RequestedPath, SourceIp};
use tower::util::MapRequest;

/// An app with [`from_api_gateway`] in front, before routing (a `Router::layer` would run after
/// routing, too late to fix the path). `B` is the request body type: lambda_http's in a Lambda.
pub type BehindApiGateway<B> = MapRequest<Router, fn(Request<B>) -> Request<B>>;

/// Repeated response headers joined into one value each (RFC 9110 §5.3), for API Gateway's
/// streaming prelude, whose `headers` map takes one string per name: a repeated header there
/// breaks the response. `Set-Cookie` stays repeated: lambda_http moves it to the prelude's
/// `cookies`.
pub async fn single_valued_headers(
    mut response: axum::response::Response,
) -> axum::response::Response {
    let headers = response.headers_mut();
    let repeated: Vec<HeaderName> = headers
        .keys()
        .filter(|name| **name != SET_COOKIE && headers.get_all(*name).iter().count() > 1)
        .cloned()
        .collect();
    for name in repeated {
        let joined: Vec<&[u8]> = headers
            .get_all(&name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        match HeaderValue::from_bytes(&joined.join(&b", "[..])) {
            Ok(value) => {
                headers.insert(name, value);
            }
            Err(error) => {
                tracing::warn!(header = %name, %error, "a repeated header could not be joined; its first value is kept");
                if let Some(first) = headers.get(&name).cloned() {
                    headers.insert(name, first);
                }
            }
        }
    }
    response
}

pub fn behind_api_gateway<B>(app: Router) -> BehindApiGateway<B> {
    MapRequest::new(app, from_api_gateway::<B> as fn(Request<B>) -> Request<B>)
}

pub fn from_api_gateway<B>(mut request: Request<B>) -> Request<B> {
    if let Some(RequestContext::ApiGatewayV1(context)) =
        request.extensions().get::<RequestContext>()
    {
        // What the client requested (and signed): `requestContext.path` is the path as sent,
        // stage (or custom domain base path) included; lambda_http's URI has the stage too.
        let requested = RequestedPath(
            context
                .path
                .clone()
                .unwrap_or_else(|| request.uri().path().to_owned()),
        );
        if let Some(stage) = context.stage.as_deref()
            && let Some(uri) = without_stage(request.uri(), stage)
        {
            *request.uri_mut() = uri;
        }
        request.extensions_mut().insert(requested);
    }
    let (request_id, source_ip, sub) = match request.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(context)) => (
            context.request_id.clone(),
            context.identity.source_ip.clone(),
            context
                .authorizer
                .fields
                .get("claims")
                .and_then(|claims| claims.get("sub"))
                .and_then(|sub| sub.as_str())
                .map(str::to_owned),
        ),
        Some(RequestContext::ApiGatewayV2(context)) => (
            context.request_id.clone(),
            context.http.source_ip.clone(),
            context
                .authorizer
                .as_ref()
                .and_then(|authorizer| authorizer.jwt.as_ref())
                .and_then(|jwt| jwt.claims.get("sub").cloned()),
        ),
        _ => (None, None, None),
    };
    let deadline = request
        .extensions()
        .get::<lambda_http::Context>()
        .map(|context| Deadline(context.deadline()));
    let extensions = request.extensions_mut();
    if let Some(deadline) = deadline {
        extensions.insert(deadline);
    }
    if let Some(id) = request_id {
        extensions.insert(UpstreamRequestId(id));
    }
    if let Some(address) = source_ip.and_then(|ip| ip.parse().ok()) {
        extensions.insert(SourceIp(address));
    }
    if let Some(sub) = sub {
        extensions.insert(GatewayClaims { sub });
    }
    request
}

fn without_stage(uri: &Uri, stage: &str) -> Option<Uri> {
    let prefix = format!("/{stage}/");
    let rest = uri.path().strip_prefix(&prefix[..prefix.len() - 1])?;
    if !rest.starts_with('/') {
        return None;
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn repeated_headers_become_one_value_and_cookies_stay_apart() {
        let mut response = axum::response::Response::new(axum::body::Body::empty());
        let headers = response.headers_mut();
        headers.append("vary", HeaderValue::from_static("origin"));
        headers.append(
            "vary",
            HeaderValue::from_static("access-control-request-method"),
        );
        headers.append(SET_COOKIE, HeaderValue::from_static("a=1"));
        headers.append(SET_COOKIE, HeaderValue::from_static("b=2"));
        headers.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        let response = single_valued_headers(response).await;
        let headers = response.headers();
        assert_eq!(headers.get_all("vary").iter().count(), 1);
        assert_eq!(headers["vary"], "origin, access-control-request-method");
        assert_eq!(headers.get_all(SET_COOKIE).iter().count(), 2);
        assert_eq!(headers["content-type"], "text/event-stream");
    }

    #[test]
    fn the_stage_is_taken_off_the_path_only_when_it_leads() {
        let strip = |uri: &str| {
            uri.parse::<Uri>()
                .ok()
                .and_then(|uri| without_stage(&uri, "Prod"))
                .map(|uri| uri.to_string())
        };
        assert_eq!(
            strip("https://h/Prod/api/manuals?limit=2").as_deref(),
            Some("https://h/api/manuals?limit=2")
        );
        assert_eq!(strip("/Prod/api/manuals").as_deref(), Some("/api/manuals"));
        assert_eq!(strip("/Production/api"), None);
        assert_eq!(strip("/api/manuals"), None);
    }
}
