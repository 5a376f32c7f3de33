//! The caller's address and the IP allowlist. The address is API Gateway's `sourceIp` in Lambda
//! and the peer address locally; `X-Forwarded-For` counts only when the peer is a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use super::Security;
use crate::error::ApiError;

/// The source address API Gateway saw, put in the request extensions by the Lambda adapter.
#[derive(Clone, Copy, Debug)]
pub struct SourceIp(pub IpAddr);

/// The caller's address as the middleware decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

fn contains(nets: &[IpNet], address: IpAddr) -> bool {
    let address = canonical(address);
    nets.iter().any(|net| net.contains(&address))
}

/// `::ffff:10.0.0.1` is 10.0.0.1 for every rule here.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

pub(crate) fn client_ip(request: &Request, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    if let Some(SourceIp(address)) = request.extensions().get::<SourceIp>() {
        return Some(canonical(*address));
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| canonical(address.ip()))?;
    if !contains(trusted_proxies, peer) {
        return Some(peer);
    }
    Some(forwarded_client(request.headers(), trusted_proxies).unwrap_or(peer))
}

/// The right-most address in `X-Forwarded-For` that is not one of our proxies.
fn forwarded_client(headers: &HeaderMap, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let value = value.to_str().ok()?;
        for hop in value.split(',') {
            hops.push(canonical(hop.trim().parse().ok()?));
        }
    }
    hops.into_iter()
        .rev()
        .find(|hop| !contains(trusted_proxies, *hop))
}

pub(crate) async fn allowlist(
    State(security): State<Security>,
    mut request: Request,
    next: Next,
) -> Response {
    let config = &security.config;
    let address = client_ip(&request, &config.trusted_proxies);
    if !config.ip_allowlist.is_empty()
        && !address.is_some_and(|address| contains(&config.ip_allowlist, address))
    {
        return ApiError::Forbidden("Requests from this address are not allowed.".to_owned())
            .into_response();
    }
    request.extensions_mut().insert(ClientIp(address));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().filter_map(|n| n.parse().ok()).collect()
    }

    fn request(peer: &str, forwarded: Option<&str>) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        if let Ok(address) = peer.parse::<SocketAddr>() {
            request.extensions_mut().insert(ConnectInfo(address));
        }
        if let Some(value) = forwarded.and_then(|v| HeaderValue::from_str(v).ok()) {
            request.headers_mut().insert("x-forwarded-for", value);
        }
        request
    }

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let proxies = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(&request("203.0.113.5:1", Some("1.2.3.4")), &proxies),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(&request("10.1.1.1:1", Some("1.2.3.4, 10.2.2.2")), &proxies),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(&request("10.1.1.1:1", Some("garbage")), &proxies),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_ip(&request("[::ffff:192.0.2.1]:1", None), &proxies),
            ip("192.0.2.1")
        );
        let mut from_gateway = request("10.1.1.1:1", Some("1.2.3.4"));
        from_gateway.extensions_mut().insert(SourceIp(
            "198.51.100.9".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
        ));
        assert_eq!(client_ip(&from_gateway, &proxies), ip("198.51.100.9"));
    }

    #[test]
    fn allowlists_match_v4_and_v6() {
        let allow = nets(&["192.0.2.0/24", "2001:db8::/32"]);
        assert!(contains(
            &allow,
            "192.0.2.77".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
        ));
        assert!(contains(
            &allow,
            "::ffff:192.0.2.77"
                .parse()
                .unwrap_or(IpAddr::from([0, 0, 0, 0]))
        ));
        assert!(contains(
            &allow,
            "2001:db8::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
        ));
        assert!(!contains(
            &allow,
            "198.51.100.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
        ));
    }
}
