//! Fetching a manual from a URL without letting the URL reach inside our network (SSRF). Each
//! hop is checked by [`manuel_core::url_policy`]; the host is resolved once, every address
//! checked, and the connection made to an address that was checked (no second lookup the
//! answer could change under). Redirects are followed by hand, at most three, each checked the
//! same way. Connect and total timeouts bound the fetch, and the size cap holds while the body
//! streams in. Inside a Lambda the fetch also stops where the invocation's deadline leaves just
//! the time to store what was fetched ([`STORE_MARGIN`]): a 30 s download inside a 15 s
//! function would otherwise be cut off by Lambda, with no answer at all.

use std::future::Ready;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{Request, StatusCode, header};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use manuel_core::url_policy::{
    FetchAllowList, FetchTarget, UrlRefusal, check_addresses, check_url, port_allowed,
};
use url::Url;

/// Time kept back from the invocation's deadline for storing the fetched manual (its object
/// of up to 25 MB in S3, its row, its sidecar) and answering.
pub const STORE_MARGIN: Duration = Duration::from_secs(4);

#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    pub max_bytes: usize,
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    pub max_redirects: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_bytes: 25 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(30),
            max_redirects: 3,
        }
    }
}

/// Why a fetch failed. Every message is safe to show the client.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Refused(#[from] UrlRefusal),
    #[error("The URL redirected more than {0} times.")]
    TooManyRedirects(usize),
    #[error("The server at that URL answered with HTTP {0}.")]
    Status(u16),
    #[error("The file at that URL is larger than the {} MB limit.", .0.div_ceil(1024 * 1024))]
    TooLarge(usize),
    #[error("The download from that URL took too long.")]
    Timeout,
    #[error("The file could not be downloaded from that URL.")]
    Unreachable,
}

/// The fetched bytes and the URL they finally came from.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: Bytes,
    pub url: Url,
}

pub struct UrlFetcher {
    tls: Arc<rustls::ClientConfig>,
    allow: FetchAllowList,
    limits: FetchLimits,
}

/// Resolves every name to the one address that was checked.
#[derive(Clone)]
struct CheckedAddress(SocketAddr);

impl tower::Service<Name> for CheckedAddress {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        std::future::ready(Ok(vec![self.0].into_iter()))
    }
}

impl UrlFetcher {
    /// TLS with the system's root certificates; `allow` is empty outside tests.
    pub fn new(allow: FetchAllowList, limits: FetchLimits) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for certificate in native.certs {
            // A certificate the store cannot use is skipped; the others still work.
            let _ = roots.add(certificate);
        }
        if roots.is_empty() {
            return Err("no TLS root certificates were found on this system".to_owned());
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS configuration: {error}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: Arc::new(tls),
            allow,
            limits,
        })
    }

    pub fn limits(&self) -> FetchLimits {
        self.limits
    }

    /// Fetches `raw`, within `total_timeout` and within the current invocation's deadline less
    /// [`STORE_MARGIN`] (manuel-local sets no deadline).
    pub async fn fetch(&self, raw: &str) -> Result<Fetched, FetchError> {
        let allowed =
            manuel_core::deadline::current().map_or(self.limits.total_timeout, |deadline| {
                deadline
                    .remaining(STORE_MARGIN)
                    .min(self.limits.total_timeout)
            });
        tokio::time::timeout(allowed, self.follow(raw))
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    async fn follow(&self, raw: &str) -> Result<Fetched, FetchError> {
        let mut target = check_url(raw, None)?;
        for hop in 0..=self.limits.max_redirects {
            let address = self.checked_address(&target).await?;
            let response = self.get(&target, address).await?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .ok_or(FetchError::Status(status.as_u16()))?;
                if hop == self.limits.max_redirects {
                    return Err(FetchError::TooManyRedirects(self.limits.max_redirects));
                }
                target = check_url(location, Some(&target.url))?;
                continue;
            }
            if status != StatusCode::OK {
                return Err(FetchError::Status(status.as_u16()));
            }
            let bytes = self.read_capped(response).await?;
            return Ok(Fetched {
                bytes,
                url: target.url,
            });
        }
        Err(FetchError::TooManyRedirects(self.limits.max_redirects))
    }

    /// The address to connect to: the URL's own, or the host's first, once all were checked.
    async fn checked_address(&self, target: &FetchTarget) -> Result<SocketAddr, FetchError> {
        let exempt = self.allow.allows(target);
        if !exempt && !port_allowed(target.port) {
            return Err(UrlRefusal::Port.into());
        }
        let addresses: Vec<IpAddr> = match target.literal {
            Some(address) => vec![address],
            None => tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(|_| UrlRefusal::Unresolved)?
                .map(|address| address.ip())
                .collect(),
        };
        if !exempt {
            check_addresses(&addresses)?;
        }
        addresses
            .first()
            .map(|&address| SocketAddr::new(address, target.port))
            .ok_or(UrlRefusal::Unresolved.into())
    }

    async fn get(
        &self,
        target: &FetchTarget,
        address: SocketAddr,
    ) -> Result<axum::http::Response<hyper::body::Incoming>, FetchError> {
        let mut http = HttpConnector::new_with_resolver(CheckedAddress(address));
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.limits.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
        let request = Request::get(target.url.as_str())
            .header(header::USER_AGENT, "Manuel/1.0 (manual download)")
            .header(
                header::ACCEPT,
                "application/pdf, text/markdown, text/plain;q=0.9, */*;q=0.5",
            )
            .body(Empty::new())
            .map_err(|_| FetchError::Refused(UrlRefusal::Invalid))?;
        client.request(request).await.map_err(|error| {
            tracing::info!(host = %target.host, error = %error, "manual download failed to connect");
            FetchError::Unreachable
        })
    }

    async fn read_capped(
        &self,
        response: axum::http::Response<hyper::body::Incoming>,
    ) -> Result<Bytes, FetchError> {
        let max = self.limits.max_bytes;
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > max as u64) {
            return Err(FetchError::TooLarge(max));
        }
        let mut body = response.into_body();
        let mut bytes = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| FetchError::Unreachable)?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > max {
                    return Err(FetchError::TooLarge(max));
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(bytes.freeze())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::{Instant, SystemTime};

    use manuel_core::deadline::{self, Deadline};

    use super::*;

    /// A web server on loopback that accepts connections and never answers.
    async fn silent_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        format!("http://127.0.0.1:{}/manual.pdf", address.port())
    }

    fn fetcher(total_timeout: Duration) -> UrlFetcher {
        UrlFetcher::new(
            FetchAllowList::parse("127.0.0.1"),
            FetchLimits {
                total_timeout,
                ..FetchLimits::default()
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_download_stops_where_the_invocation_leaves_just_time_to_store_it() {
        let url = silent_server().await;
        let fetcher = fetcher(Duration::from_secs(30));
        // A 15 s function: the download may use 15 s less the margin, never its own 30 s.
        let soon = Deadline(SystemTime::now() + STORE_MARGIN + Duration::from_millis(700));
        let started = Instant::now();
        let result = deadline::within(Some(soon), fetcher.fetch(&url)).await;
        let waited = started.elapsed();
        assert!(matches!(result, Err(FetchError::Timeout)), "{result:?}");
        assert!(
            waited >= Duration::from_millis(600) && waited < Duration::from_millis(1_500),
            "{waited:?}"
        );

        // Without a deadline (manuel-local) the fetch's own timeout applies.
        let started = Instant::now();
        let result = fetcher_with_short_timeout().fetch(&url).await;
        assert!(matches!(result, Err(FetchError::Timeout)), "{result:?}");
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    fn fetcher_with_short_timeout() -> UrlFetcher {
        fetcher(Duration::from_secs(1))
    }
}
