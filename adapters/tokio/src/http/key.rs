//! Which bucket a request draws on: the [`KeyExtractor`] trait and its implementations (the
//! peer address, a header, forwarding headers behind trusted proxies, a closure, one for all).

use core::hash::Hash;
use core::net::{IpAddr, SocketAddr};
use std::fmt;

use http::header::{FORWARDED, HeaderName};
use http::{Extensions, HeaderMap, HeaderValue, Method, Request, Uri};

/// Finds the key of a request: the client it is counted against.
///
/// `None` means the request has no key (a missing header, a server that does not record peer
/// addresses); what the layer does then is its
/// [`when_no_key`](super::HttpRateLimitLayer::when_no_key) setting.
///
/// ```
/// use http::Request;
/// use tollgate_tokio::http::{HeaderKey, KeyExtractor};
///
/// let by_api_key = HeaderKey::new("x-api-key");
/// let request = Request::builder().header("x-api-key", "alice").body(()).unwrap();
/// assert_eq!(by_api_key.extract(&request).unwrap(), "alice");
/// assert!(by_api_key.extract(&Request::new(())).is_none());
/// ```
pub trait KeyExtractor {
    /// The key type: one bucket per distinct value.
    type Key: Hash + Eq + Clone + Send + Sync + 'static;

    /// The key of `request`, or `None` if it has none.
    fn extract<B>(&self, request: &Request<B>) -> Option<Self::Key>;
}

/// The parts of a request a [`KeyFn`] closure sees (everything but the body).
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    pub fn of<B>(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// The request method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request extensions (where servers put the peer address).
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }

    /// The peer address, as [`PeerIp`] finds it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        peer_addr(self.extensions)
    }
}

/// The peer address recorded in `extensions`: axum's `ConnectInfo<SocketAddr>` (feature
/// `axum`), or a plain `SocketAddr` a hyper server put there.
fn peer_addr(extensions: &Extensions) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    extensions.get::<SocketAddr>().copied()
}

/// Keys requests by the peer's IP address (the port is ignored: one client, many
/// connections).
///
/// The address comes from the request's extensions: axum's `ConnectInfo<SocketAddr>` (serve
/// with `into_make_service_with_connect_info::<SocketAddr>()`; needs the `axum` feature) or a
/// `SocketAddr` a hyper server inserted. Behind a reverse proxy or load balancer the peer is
/// the proxy, so every client would share its bucket: see [`ForwardedIp`].
///
/// ```
/// use std::net::SocketAddr;
/// use http::Request;
/// use tollgate_tokio::http::{KeyExtractor, PeerIp};
///
/// let mut request = Request::new(());
/// assert_eq!(PeerIp.extract(&request), None); // the server recorded no address
/// request.extensions_mut().insert("192.0.2.7:5000".parse::<SocketAddr>().unwrap());
/// assert_eq!(PeerIp.extract(&request), Some("192.0.2.7".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerIp;

impl KeyExtractor for PeerIp {
    type Key = IpAddr;

    #[inline]
    fn extract<B>(&self, request: &Request<B>) -> Option<IpAddr> {
        peer_addr(request.extensions()).map(|addr| addr.ip())
    }
}

/// Keys requests by the value of one header (an API key, a tenant id). A request without the
/// header, or with it more than once, has no key.
///
/// The key is the raw header value; a client can pick any value, so this suits headers the
/// server checks (an API key it authenticates) or limits per claimed identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys by the header `name`.
    ///
    /// # Panics
    /// If `name` is not a valid header name; [`HeaderKey::from_name`] takes a checked one.
    pub fn new(name: &'static str) -> Self {
        Self::from_name(HeaderName::from_static(name))
    }

    /// Keys by the header `name`.
    pub fn from_name(name: HeaderName) -> Self {
        Self { name }
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }
}

impl KeyExtractor for HeaderKey {
    type Key = HeaderValue;

    fn extract<B>(&self, request: &Request<B>) -> Option<HeaderValue> {
        let mut values = request.headers().get_all(&self.name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value.clone()),
            // Absent, or repeated (ambiguous: which one would the application use?).
            _ => None,
        }
    }
}

/// One bucket for all requests: a global limit with the HTTP answers of the keyed layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Global;

impl KeyExtractor for Global {
    type Key = ();

    #[inline]
    fn extract<B>(&self, _: &Request<B>) -> Option<()> {
        Some(())
    }
}

/// Keys requests by what a closure returns for their [`RequestHead`]; made by [`key_fn`].
#[derive(Clone)]
pub struct KeyFn<F> {
    f: F,
}

/// A key extractor from a closure over the request's head.
///
/// ```
/// use http::Request;
/// use tollgate_tokio::http::{KeyExtractor, key_fn};
///
/// // One bucket per (tenant, first path segment).
/// let by_route = key_fn(|head| {
///     let tenant = head.headers().get("x-tenant")?.to_str().ok()?.to_owned();
///     let route = head.uri().path().split('/').nth(1).unwrap_or("").to_owned();
///     Some((tenant, route))
/// });
/// let request = Request::builder().uri("/search?q=1").header("x-tenant", "acme").body(()).unwrap();
/// assert_eq!(by_route.extract(&request), Some(("acme".to_owned(), "search".to_owned())));
/// ```
pub fn key_fn<F, K>(f: F) -> KeyFn<F>
where
    F: Fn(&RequestHead<'_>) -> Option<K>,
{
    KeyFn { f }
}

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn").finish_non_exhaustive()
    }
}

impl<F, K> KeyExtractor for KeyFn<F>
where
    F: Fn(&RequestHead<'_>) -> Option<K>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = K;

    fn extract<B>(&self, request: &Request<B>) -> Option<K> {
        (self.f)(&RequestHead::of(request))
    }
}

/// Keys requests by the client address that trusted proxies report in `X-Forwarded-For`
/// ([`ForwardedIp::new`]) or in RFC 7239 `Forwarded` ([`ForwardedIp::rfc7239`]); the peer
/// address when no proxy is trusted.
///
/// It reads exactly the one header your proxies write and never falls back to the other:
/// most proxies (nginx, cloud load balancers) append to `X-Forwarded-For` and pass a client's
/// own `Forwarded` through untouched, so preferring `Forwarded` when present would let any
/// client name its key. A hop that is not valid text counts as a hop (it cannot shift the
/// count and so pick another address), and as an address it is no address.
///
/// **Off by default for a reason:** these headers are written by whoever sends the request,
/// so trusting more proxies than really stand in front of the server lets a client pick its
/// own key (a fresh bucket per request). Each proxy appends the address it received the
/// request from, so with `trusted_proxies` = n the client is the n-th address from the
/// right: the one the outermost trusted proxy saw. A request carrying fewer addresses than
/// that did not come through the whole chain and is keyed by its peer address, as is one whose
/// n-th entry is not an IP address (`unknown`, an obfuscated identifier).
///
/// ```
/// use std::net::SocketAddr;
/// use http::Request;
/// use tollgate_tokio::http::{ForwardedIp, KeyExtractor};
///
/// let behind_one_proxy = ForwardedIp::new(1);
/// let mut request = Request::builder()
///     .header("x-forwarded-for", "203.0.113.9, 198.51.100.4") // a client's claim, then the proxy's
///     .body(())
///     .unwrap();
/// request.extensions_mut().insert("10.0.0.2:40000".parse::<SocketAddr>().unwrap()); // the proxy
/// assert_eq!(behind_one_proxy.extract(&request), Some("198.51.100.4".parse().unwrap()));
/// assert_eq!(ForwardedIp::new(0).extract(&request), Some("10.0.0.2".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedIp {
    trusted_proxies: usize,
    rfc7239: bool,
}

/// `X-Forwarded-For`, which `http` has no constant for.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl ForwardedIp {
    /// Trusts the last `trusted_proxies` hops of `X-Forwarded-For` (0: none, the same as
    /// [`PeerIp`]); a `Forwarded` header is ignored.
    pub const fn new(trusted_proxies: usize) -> Self {
        Self { trusted_proxies, rfc7239: false }
    }

    /// Trusts the last `trusted_proxies` hops of RFC 7239 `Forwarded` (their `for=` nodes);
    /// `X-Forwarded-For` is ignored. For proxies configured to write `Forwarded`.
    pub const fn rfc7239(trusted_proxies: usize) -> Self {
        Self { trusted_proxies, rfc7239: true }
    }

    /// The number of proxies trusted.
    pub const fn trusted_proxies(&self) -> usize {
        self.trusted_proxies
    }

    /// The n-th address from the right in the forwarding headers, if there are that many and
    /// it is an IP address.
    fn forwarded(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let name = if self.rfc7239 { FORWARDED } else { X_FORWARDED_FOR };
        // Split the raw bytes: dropping a line that is not valid text would drop the hops a
        // proxy appended to it, and shift the count.
        let hops: Vec<&[u8]> =
            headers.get_all(name).iter().flat_map(|v| v.as_bytes().split(|&b| b == b',')).collect();
        let hop = hops.len().checked_sub(self.trusted_proxies).map(|i| hops[i])?;
        let hop = core::str::from_utf8(hop).ok()?;
        if self.rfc7239 { parse_forwarded_for(hop) } else { parse_node(hop.trim()) }
    }
}

impl KeyExtractor for ForwardedIp {
    type Key = IpAddr;

    fn extract<B>(&self, request: &Request<B>) -> Option<IpAddr> {
        if self.trusted_proxies > 0 {
            if let Some(ip) = self.forwarded(request.headers()) {
                return Some(ip);
            }
        }
        PeerIp.extract(request)
    }
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.60;proto=http;by=...`).
fn parse_forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        parse_node(value)
    })
}

/// An address with or without a port: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    let inner = node.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<core::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&'static str, &str)], peer: Option<&str>) -> Request<()> {
        let mut builder = Request::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).unwrap();
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer.parse::<SocketAddr>().unwrap());
        }
        request
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nodes_parse_with_and_without_ports_and_brackets() {
        assert_eq!(parse_node("192.0.2.1"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("192.0.2.1:8080"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("[2001:db8::1]:4711"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("_hidden"), None);
        assert_eq!(parse_node(""), None);
    }

    #[test]
    fn forwarded_takes_the_nth_hop_from_the_right() {
        let r = request(
            &[(
                "forwarded",
                "for=203.0.113.1, for=\"[2001:db8::7]:4711\";proto=https, for=198.51.100.2;by=10.0.0.1",
            )],
            Some("10.0.0.9:1"),
        );
        assert_eq!(ForwardedIp::rfc7239(1).extract(&r), Some(ip("198.51.100.2")));
        assert_eq!(ForwardedIp::rfc7239(2).extract(&r), Some(ip("2001:db8::7")));
        assert_eq!(ForwardedIp::rfc7239(3).extract(&r), Some(ip("203.0.113.1")));
        // Fewer hops than trusted proxies: not through the chain, keyed by the peer.
        assert_eq!(ForwardedIp::rfc7239(4).extract(&r), Some(ip("10.0.0.9")));
        assert_eq!(ForwardedIp::new(0).extract(&r), Some(ip("10.0.0.9")));
    }

    #[test]
    fn each_form_reads_only_its_own_header_and_lines_concatenate() {
        let r = request(
            &[
                ("x-forwarded-for", "192.0.2.50"),
                ("forwarded", "for=192.0.2.1"),
                ("forwarded", "For=192.0.2.2"),
            ],
            Some("10.0.0.9:1"),
        );
        assert_eq!(ForwardedIp::rfc7239(1).extract(&r), Some(ip("192.0.2.2")));
        assert_eq!(ForwardedIp::rfc7239(2).extract(&r), Some(ip("192.0.2.1")));
        assert_eq!(ForwardedIp::new(1).extract(&r), Some(ip("192.0.2.50")));
    }

    /// Found in review: behind a proxy that appends to `X-Forwarded-For` only, a client's own
    /// `Forwarded` header used to win and name the key.
    #[test]
    fn a_clients_forwarded_header_cannot_pick_the_key() {
        let r = request(
            &[("forwarded", "for=6.6.6.6"), ("x-forwarded-for", "203.0.113.7")],
            Some("10.0.0.2:1"),
        );
        assert_eq!(ForwardedIp::new(1).extract(&r), Some(ip("203.0.113.7")));
    }

    /// Found in review: a byte that is not text in the client's part of a line used to drop
    /// the whole line, the proxy's hop with it, so the client got the proxy's bucket.
    #[test]
    fn a_hop_that_is_not_text_is_still_a_hop() {
        let mut r = request(&[], Some("10.0.0.2:1"));
        r.headers_mut()
            .insert(X_FORWARDED_FOR, HeaderValue::from_bytes(b"\x80x, 203.0.113.7").unwrap());
        assert_eq!(ForwardedIp::new(1).extract(&r), Some(ip("203.0.113.7")));
        // The client's own hop is no address: keyed by the peer, not by a shifted hop.
        assert_eq!(ForwardedIp::new(2).extract(&r), Some(ip("10.0.0.2")));
    }

    #[test]
    fn x_forwarded_for_is_split_across_lines_and_commas() {
        let r = request(
            &[("x-forwarded-for", "1.1.1.1, 2.2.2.2"), ("x-forwarded-for", " 3.3.3.3 ")],
            None,
        );
        assert_eq!(ForwardedIp::new(1).extract(&r), Some(ip("3.3.3.3")));
        assert_eq!(ForwardedIp::new(3).extract(&r), Some(ip("1.1.1.1")));
        // No peer address either: no key at all.
        assert_eq!(ForwardedIp::new(4).extract(&r), None);
    }

    #[test]
    fn an_obfuscated_hop_falls_back_to_the_peer() {
        let r = request(&[("forwarded", "for=unknown, for=_x1")], Some("10.0.0.9:1"));
        assert_eq!(ForwardedIp::rfc7239(1).extract(&r), Some(ip("10.0.0.9")));
        let r = request(&[("x-forwarded-for", "not-an-ip")], Some("10.0.0.9:1"));
        assert_eq!(ForwardedIp::new(1).extract(&r), Some(ip("10.0.0.9")));
    }

    #[test]
    fn a_repeated_key_header_is_no_key() {
        let r = request(&[("x-api-key", "a"), ("x-api-key", "b")], None);
        assert_eq!(HeaderKey::new("x-api-key").extract(&r), None);
    }

    #[test]
    fn peer_ip_ignores_the_port() {
        let a = request(&[], Some("127.0.0.2:1000"));
        let b = request(&[], Some("127.0.0.2:2000"));
        assert_eq!(PeerIp.extract(&a), PeerIp.extract(&b));
        assert_eq!(Global.extract(&a), Some(()));
    }
}
