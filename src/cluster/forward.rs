//! Forwarding a request about an organization to a node that serves its
//! partition (docs/cluster.md, "Routing").
//!
//! The request goes as it came (method, path, query, headers but the
//! hop-by-hop ones, body) with [`FORWARDED_BY`] added; the serving node
//! authenticates it and answers it as if it were asked directly, and its
//! answer comes back as it is, with [`SERVED_BY`] added. A forwarded
//! request is never forwarded again: a node that no longer serves the
//! partition (the forwarder's view of the members was a moment old)
//! answers `503` with [`NOT_SERVING`], and the forwarder tries the next
//! node. Another node is also tried when one cannot be reached, and, for
//! a `GET`, when one does not answer in time; a change that may have been
//! made is never sent twice.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::server::error::ApiError;
use crate::server::replication::ForwardLimits;

/// Added to a forwarded request: the forwarding node's id.
pub const FORWARDED_BY: &str = "x-auditstore-forwarded-by";
/// Added to a forwarded answer: the node that answered.
pub const SERVED_BY: &str = "x-auditstore-node";
/// On a `503` of a node asked about a partition it does not serve.
pub const NOT_SERVING: &str = "x-auditstore-not-serving";

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "host",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The HTTP client of a node (its connections are pooled).
pub struct Forwarder {
    client: Client<HttpConnector, Body>,
    node: HeaderValue,
}

impl Forwarder {
    pub fn new(node: &str) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Forwarder {
            client,
            // Node ids are [A-Za-z0-9_-]: always a valid header value.
            node: HeaderValue::from_str(node).unwrap_or(HeaderValue::from_static("node")),
        }
    }

    /// Send `request` about partition `partition` to the first of
    /// `targets` (node id, base URL) that answers it.
    pub async fn send(
        &self,
        partition: u32,
        targets: Vec<(String, String)>,
        request: Request,
        limits: ForwardLimits,
    ) -> Response {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, limits.body_limit).await else {
            return ApiError::too_large(limits.body_limit).into_response();
        };
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let safe = matches!(parts.method, Method::GET | Method::HEAD);
        let mut failures = Vec::new();
        for (node, address) in targets {
            let Ok(uri) = format!("{}{path}", address.trim_end_matches('/')).parse::<Uri>() else {
                failures.push(format!("{node}: its address {address:?} is not a URL"));
                continue;
            };
            let mut forwarded = Request::new(Body::from(bytes.clone()));
            *forwarded.method_mut() = parts.method.clone();
            *forwarded.uri_mut() = uri;
            for (name, value) in &parts.headers {
                if !HOP_BY_HOP.contains(&name.as_str()) {
                    forwarded.headers_mut().append(name.clone(), value.clone());
                }
            }
            forwarded
                .headers_mut()
                .insert(HeaderName::from_static(FORWARDED_BY), self.node.clone());
            match tokio::time::timeout(limits.timeout, self.client.request(forwarded)).await {
                Ok(Ok(answer)) => {
                    if answer.status() == StatusCode::SERVICE_UNAVAILABLE
                        && answer.headers().contains_key(NOT_SERVING)
                    {
                        failures.push(format!("{node}: no longer serves it"));
                        continue;
                    }
                    let (mut head, incoming) = answer.into_parts();
                    for name in HOP_BY_HOP {
                        head.headers.remove(*name);
                    }
                    if let Ok(value) = HeaderValue::from_str(&node) {
                        head.headers.insert(HeaderName::from_static(SERVED_BY), value);
                    }
                    metrics::counter!("auditstore_cluster_forwarded_total").increment(1);
                    return Response::from_parts(head, Body::new(incoming));
                }
                Ok(Err(e)) if safe || e.is_connect() => failures.push(format!("{node} ({address}): {e}")),
                Err(_) if safe => failures.push(format!("{node}: no answer within {:?}", limits.timeout)),
                Ok(Err(e)) => {
                    return unknown_outcome(partition, &node, &e.to_string());
                }
                Err(_) => {
                    return unknown_outcome(
                        partition,
                        &node,
                        &format!("no answer within {:?}", limits.timeout),
                    )
                }
            }
        }
        metrics::counter!("auditstore_cluster_forward_failures_total").increment(1);
        ApiError::unavailable(format!(
            "this node does not serve partition {partition} and no node serving it answered ({}); try again",
            failures.join("; ")
        ))
        .with("partition", partition)
        .into_response()
    }
}

/// A change sent to a node that did not answer: it may have been made.
fn unknown_outcome(partition: u32, node: &str, why: &str) -> Response {
    metrics::counter!("auditstore_cluster_forward_failures_total").increment(1);
    ApiError::unavailable(format!(
        "forwarded to node {node}, which serves partition {partition}, and got no answer ({why}); \
         the change may or may not be made: look, then retry"
    ))
    .with("partition", partition)
    .into_response()
}

/// The `503` of a node asked about a partition it does not serve.
pub fn not_serving(partition: u32, forwarded: bool) -> Response {
    let message = if forwarded {
        format!(
            "this node does not serve partition {partition} (the forwarding node's view of the members \
             was out of date); try again"
        )
    } else {
        format!("no node serves partition {partition} now (`cluster status`); try again shortly")
    };
    let mut response = ApiError::unavailable(message)
        .with("partition", partition)
        .into_response();
    if forwarded {
        response.headers_mut().insert(
            HeaderName::from_static(NOT_SERVING),
            HeaderValue::from_static("1"),
        );
    }
    response
}
