//! Header rewriting between the client and the upstream: pure functions over `HeaderMap`.
//!
//! Owns which headers cross the proxy: hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and
//! every header it names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`,
//! `Upgrade`) are dropped in both directions, except the `Upgrade` / `Connection: upgrade` pair
//! of a protocol upgrade; `X-Forwarded-For` gains the peer's address and `X-Forwarded-Proto` is
//! set to `http`. It must not do I/O or look at bodies.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The fixed hop-by-hop headers (`Proxy-*` is matched by prefix).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `X-Forwarded-For`.
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The protocol a request asks to upgrade to: its `Upgrade` value, when `Connection` names
/// `upgrade`.
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let names_upgrade = connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"));
    if !names_upgrade {
        return None;
    }
    headers
        .get(header::UPGRADE)
        .filter(|v| !v.is_empty())
        .cloned()
}

/// Every comma-separated token of every `Connection` header.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Drops the hop-by-hop headers: those `Connection` names, then the fixed ones and `Proxy-*`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// Puts back the pair that carries an upgrade across one hop.
fn set_upgrade(headers: &mut HeaderMap, protocol: &HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol.clone());
}

/// Rewrites a client's request headers for the upstream.
///
/// `upgrade` is the protocol of an upgrade request ([`upgrade_protocol`]), kept across.
/// `Expect` is answered by the proxy's own HTTP server, so it is not passed on.
pub(crate) fn prepare_request(
    headers: &mut HeaderMap,
    peer: IpAddr,
    upgrade: Option<&HeaderValue>,
) {
    strip_hop_by_hop(headers);
    headers.remove(header::EXPECT);
    if let Some(protocol) = upgrade {
        set_upgrade(headers, protocol);
    }
    append_forwarded_for(headers, peer);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
}

/// Rewrites an upstream's response headers for the client; `upgrade` is the protocol of a
/// `101 Switching Protocols` answer to an upgrade request.
pub(crate) fn prepare_response(headers: &mut HeaderMap, upgrade: Option<&HeaderValue>) {
    strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        set_upgrade(headers, protocol);
    }
}

/// Appends `peer` to `X-Forwarded-For`, folding earlier lines into one
/// (`client, proxy1, peer`).
pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, peer: IpAddr) {
    let peer = peer.to_canonical().to_string();
    let mut value: Vec<u8> = Vec::new();
    for earlier in headers.get_all(&X_FORWARDED_FOR) {
        let earlier = earlier.as_bytes().trim_ascii();
        if earlier.is_empty() {
            continue;
        }
        value.extend_from_slice(earlier);
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(peer.as_bytes());
    // Earlier values were valid header bytes; so are ", " and an address.
    let value = HeaderValue::from_bytes(&value).unwrap_or_else(|_| {
        HeaderValue::from_str(&peer).expect("an IP address is a valid header value")
    });
    headers.insert(X_FORWARDED_FOR.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_with_those_connection_names() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("host", "example.test"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "x-kept"]);
    }

    #[test]
    fn an_upgrade_needs_both_headers() {
        let h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
        assert!(upgrade_protocol(&map(&[("upgrade", "websocket")])).is_none());
        assert!(upgrade_protocol(&map(&[("connection", "upgrade")])).is_none());
    }

    #[test]
    fn requests_gain_forwarding_headers_and_keep_their_upgrade() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("x-forwarded-proto", "https"),
            ("expect", "100-continue"),
        ]);
        let protocol = upgrade_protocol(&h);
        prepare_request(&mut h, ip("127.0.0.1"), protocol.as_ref());
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(h.get("expect").is_none());

        let mut plain = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        prepare_request(&mut plain, ip("127.0.0.1"), None);
        assert!(plain.get("upgrade").is_none() && plain.get("connection").is_none());
    }

    #[test]
    fn forwarded_for_appends_the_peer_to_earlier_hops() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", " 10.0.0.1 "),
        ]);
        append_forwarded_for(&mut h, ip("::ffff:192.0.2.1"));
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.0.0.1, 192.0.2.1");

        let mut fresh = HeaderMap::new();
        append_forwarded_for(&mut fresh, ip("::1"));
        assert_eq!(fresh["x-forwarded-for"], "::1");
    }

    #[test]
    fn responses_lose_hop_by_hop_headers_unless_switching() {
        let mut h = map(&[
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
            ("keep-alive", "5"),
        ]);
        prepare_response(&mut h, None);
        assert!(h.is_empty());
        let mut switching = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "a"),
        ]);
        prepare_response(&mut switching, Some(&HeaderValue::from_static("websocket")));
        assert_eq!(switching["upgrade"], "websocket");
        assert_eq!(switching["connection"], "upgrade");
        assert_eq!(switching["sec-websocket-accept"], "a");
    }
}
