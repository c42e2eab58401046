//! The public HTTP/JSON API (DESIGN §7).
//!
//! Every answer is JSON, errors included: `{"error": {"code", "message"}}`,
//! with `field` naming the offending input on a 400. A client's mistake is
//! never a 500; a node that is not serving answers 503 with `Retry-After`.

use crate::driver::Runtime;
use crate::node::Control;
use crate::node::{Node, ServeError};
use crate::timestamp::{LOGICAL_PER_MS, RangeJson};
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

mod migration;

/// Largest request body accepted; a timestamp request is a few bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// What the admin endpoints need.
pub struct AdminConfig {
    /// Bearer token of `/v1/admin/*`; `None` turns those endpoints off.
    pub token: Option<String>,
    /// Compiles uploaded components.
    pub runtime: Runtime,
    /// The node's coordinator, which performs swaps.
    pub control: mpsc::UnboundedSender<Control>,
    /// Storage failures injected through `/v1/admin/faults`.
    pub storage_faults: Arc<crate::storage::Failpoint>,
    /// The node's clock, whose wall-clock offset `/v1/admin/faults` sets.
    pub clock: Arc<crate::clock::SkewedClock>,
    /// Traps and hangs injected into the running driver.
    pub guest_faults: Arc<crate::driver::fault::GuestFaults>,
}

/// Largest driver component accepted by `PUT /v1/admin/driver`.
pub const MAX_COMPONENT: usize = 64 << 20;

pub fn router(node: Arc<Node>, admin: AdminConfig) -> Router {
    let admin = Router::new()
        .route("/v1/admin/faults", get(get_faults).put(put_faults))
        .route("/v1/admin/driver", put(put_driver))
        .route("/v1/admin/members", put(put_members))
        .route("/v1/admin/leader", post(post_leader))
        .route(
            "/v1/admin/migration/seal",
            post(migration::seal).delete(migration::unseal),
        )
        .route("/v1/admin/migration/read", post(migration::read))
        .route("/v1/admin/migration/prepare", post(migration::prepare))
        .route("/v1/admin/migration/driver", put(migration::switch))
        .with_state(Admin {
            node: node.clone(),
            token: admin.token.map(Arc::from),
            runtime: admin.runtime,
            control: admin.control,
            storage_faults: admin.storage_faults,
            clock: admin.clock,
            guest_faults: admin.guest_faults,
        });
    Router::new()
        .route("/v1/timestamps", post(post_timestamps))
        .route("/v1/timestamp", get(get_timestamp))
        .route("/v1/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(node)
        .merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// A JSON error answer.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
    retry_after: bool,
}

impl ApiError {
    fn bad_request(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            field: Some(field),
            retry_after: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = field.into();
        }
        let mut response = (
            self.status,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            axum::Json(serde_json::json!({ "error": error })),
        )
            .into_response();
        if self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<ServeError> for ApiError {
    fn from(e: ServeError) -> ApiError {
        match e {
            ServeError::BadRequest(e) => ApiError::bad_request("count", e.to_string()),
            ServeError::Unavailable { reason, leader } => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "not_serving",
                message: match leader {
                    Some(id) => format!("{reason}; node {id} leads"),
                    None => format!("{reason}; retry shortly"),
                },
                field: None,
                retry_after: true,
            },
        }
    }
}

/// `count` from JSON: a whole number in 1..=2^18, or a 400 naming it.
fn parse_count(value: Option<&serde_json::Value>) -> Result<u64, ApiError> {
    let Some(value) = value else { return Ok(1) };
    match value.as_u64() {
        Some(n) if (1..=LOGICAL_PER_MS).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(
            "count",
            format!("count must be a whole number from 1 to {LOGICAL_PER_MS}, got {value}"),
        )),
    }
}

async fn post_timestamps(State(node): State<Arc<Node>>, uri: Uri, body: Body) -> Response {
    let result = async {
        let bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "body_too_large",
                message: format!("the request body is larger than {MAX_BODY} bytes"),
                field: Some("body"),
                retry_after: false,
            })?;
        let count = if bytes.iter().all(u8::is_ascii_whitespace) {
            1
        } else {
            let not_an_object = |detail: String| {
                ApiError::bad_request(
                    "body",
                    format!("the body must be a JSON object like {{\"count\": 10}}: {detail}"),
                )
            };
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| not_an_object(e.to_string()))?;
            let serde_json::Value::Object(fields) = value else {
                return Err(not_an_object(format!("got {value}")));
            };
            if let Some(unknown) = fields.keys().find(|k| k.as_str() != "count") {
                return Err(not_an_object(format!("unknown field `{unknown}`")));
            }
            parse_count(fields.get("count"))?
        };
        grant(&node, count, &uri).await
    };
    respond(&node, result.await)
}

async fn get_timestamp(
    State(node): State<Arc<Node>>,
    uri: Uri,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let result = async {
        let Query(query) =
            query.map_err(|e| ApiError::bad_request("query", format!("malformed query: {e}")))?;
        if let Some(unknown) = query.keys().find(|k| k.as_str() != "count") {
            return Err(ApiError::bad_request(
                "query",
                format!("unknown query parameter `{unknown}`; only `count` is accepted"),
            ));
        }
        let count = match query.get("count") {
            None => 1,
            Some(raw) => {
                let value = raw
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| serde_json::Value::String(raw.clone()));
                parse_count(Some(&value))?
            }
        };
        grant(&node, count, &uri).await
    };
    respond(&node, result.await)
}

/// Count a client's mistake (the node counts the requests it serves or
/// refuses for being unavailable).
fn respond(node: &Node, result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        if e.status.is_client_error() {
            crate::metrics::Metrics::inc(&node.metrics.requests_bad_total);
        }
        e.into_response()
    })
}

async fn grant(node: &Node, count: u64, uri: &Uri) -> Result<Response, ApiError> {
    let grant = match node.timestamps(count).await {
        Ok(grant) => grant,
        Err(ServeError::Unavailable {
            reason,
            leader: Some(leader),
        }) if node.url_of(leader).is_some() => {
            return Ok(redirect(node, leader, &reason, uri));
        }
        Err(e) => return Err(e.into()),
    };
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(RangeJson::new(grant.first, grant.count)),
    )
        .into_response())
}

/// `307` to the leader, with the same path and query, and a JSON body
/// naming it: clients that do not follow redirects still learn the leader.
fn redirect(node: &Node, leader: u64, reason: &str, uri: &Uri) -> Response {
    let base = node.url_of(leader).unwrap_or_default();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("{}{path}", base.trim_end_matches('/'));
    let body = serde_json::json!({"error": {
        "code": "not_leader",
        "message": format!("{reason}; node {leader} leads at {base}"),
        "leader": {"id": leader, "url": base},
    }});
    let mut response = (StatusCode::TEMPORARY_REDIRECT, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn status(State(node): State<Arc<Node>>) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(node.status()),
    )
        .into_response()
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(node): State<Arc<Node>>) -> Response {
    if node.is_serving() {
        axum::Json(serde_json::json!({"status": "serving"})).into_response()
    } else {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "not_serving",
            message: "this node is not serving timestamps (see /v1/status)".into(),
            field: None,
            retry_after: true,
        }
        .into_response()
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        node.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such endpoint; see /v1/timestamps, /v1/timestamp, /v1/status".into(),
        field: None,
        retry_after: false,
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "this endpoint does not accept that method (timestamps: POST /v1/timestamps or \
                  GET /v1/timestamp)"
            .into(),
        field: None,
        retry_after: false,
    }
}

/// State of the admin endpoints.
#[derive(Clone)]
struct Admin {
    node: Arc<Node>,
    token: Option<Arc<str>>,
    runtime: Runtime,
    control: mpsc::UnboundedSender<Control>,
    storage_faults: Arc<crate::storage::Failpoint>,
    clock: Arc<crate::clock::SkewedClock>,
    guest_faults: Arc<crate::driver::fault::GuestFaults>,
}

impl Admin {
    /// The admin API is off without a configured token, and needs
    /// `Authorization: Bearer <token>` when on.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                code: "admin_off",
                message: "the admin API is off; start the node with --admin-token-file".into(),
                field: None,
                retry_after: false,
            });
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let same = given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                code: "unauthorized",
                message: "missing or wrong admin token (Authorization: Bearer <token>)".into(),
                field: None,
                retry_after: false,
            })
        }
    }

    /// The faults in force, as `GET /v1/admin/faults` shows them.
    fn faults(&self) -> serde_json::Value {
        serde_json::json!({
            "blocked_peers": self.node.network.as_ref().map(|n| n.faults.blocked()),
            "dropped_from": self.node.network.as_ref().map(|n| n.faults.dropped_from()),
            "fail_storage_writes": self.storage_faults.pending(),
            "clock_offset_ms": self.clock.offset_ms(),
            "guest": self.guest_faults.pending(),
        })
    }

    fn network(&self) -> Result<&Arc<crate::peer::Network>, ApiError> {
        self.node.network.as_ref().ok_or(ApiError {
            status: StatusCode::CONFLICT,
            code: "no_cluster",
            message: "this node runs alone: there is no peer traffic to fault".into(),
            field: None,
            retry_after: false,
        })
    }
}

async fn get_faults(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    let result = admin
        .authorize(&headers)
        .map(|()| axum::Json(admin.faults()).into_response());
    respond(&admin.node, result)
}

/// The body of `PUT /v1/admin/faults`: each field given sets that fault,
/// the others stay as they are.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsBody {
    /// Drop all peer traffic to and from these nodes; `[]` heals.
    blocked_peers: Option<Vec<u64>>,
    /// Drop messages from these nodes but keep sending to them (a one-way
    /// partition); `[]` heals.
    dropped_from: Option<Vec<u64>>,
    /// Fail this many of the next storage writes; 0 heals.
    fail_storage_writes: Option<u64>,
    /// Step this node's wall clock by this much from the system's; 0 heals.
    clock_offset_ms: Option<i64>,
    /// Make the running driver trap or hang in its next call into the
    /// host, or exhaust its memory with the next peer message.
    guest: Option<crate::driver::fault::GuestFault>,
}

/// `PUT /v1/admin/faults`: fault injection for tests and `tsohost chaos`
/// (see [`FaultsBody`]); answers the faults now in force.
async fn put_faults(State(admin): State<Admin>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        admin.authorize(&headers)?;
        let bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| ApiError::bad_request("body", "body too large"))?;
        let faults: FaultsBody = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(
                "body",
                format!(
                    "{e}; expected {{\"blocked_peers\": [node ids], \"dropped_from\": [node ids], \
                     \"fail_storage_writes\": N, \"clock_offset_ms\": N, \"guest\": \"trap\", \
                     \"hang\" or \"exhaust\"}}, each optional"
                ),
            )
        })?;
        if let Some(offset) = faults.clock_offset_ms
            && offset.abs() > crate::clock::MAX_OFFSET_MS
        {
            return Err(ApiError::bad_request(
                "clock_offset_ms",
                format!("at most {} ms either way", crate::clock::MAX_OFFSET_MS),
            ));
        }
        if let Some(peers) = faults.blocked_peers {
            let network = admin.network()?;
            tracing::warn!("fault injection: dropping peer traffic with {peers:?}");
            network.faults.set_blocked(peers);
        }
        if let Some(peers) = faults.dropped_from {
            let network = admin.network()?;
            tracing::warn!("fault injection: dropping peer messages from {peers:?}");
            network.faults.set_dropped_from(peers);
        }
        if let Some(n) = faults.fail_storage_writes {
            tracing::warn!("fault injection: failing the next {n} storage writes");
            admin.storage_faults.fail_writes(n);
        }
        if let Some(fault) = faults.guest {
            tracing::warn!("fault injection: the driver will {fault:?}");
            admin.guest_faults.inject(fault);
        }
        if let Some(offset) = faults.clock_offset_ms {
            tracing::warn!("fault injection: wall clock stepped to the system's {offset:+} ms");
            admin.clock.set_offset_ms(offset);
        }
        Ok(axum::Json(admin.faults()).into_response())
    };
    respond(&admin.node, result.await)
}

/// `PUT /v1/admin/driver` with the component's bytes: hot-swap the running
/// driver for a new build of it. The component is compiled and validated
/// while the old driver keeps serving; a component that fails either, or
/// whose `init` fails, leaves the old driver serving and the error is
/// returned (once the old build, started again, serves or follows a leader).
async fn put_driver(State(admin): State<Admin>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        admin.authorize(&headers)?;
        let loaded = upload(&admin, body).await?;
        let status = ask(&admin, |reply| Control::Swap {
            driver: Box::new(loaded),
            reply,
        })
        .await?;
        Ok(axum::Json(serde_json::json!({ "driver": status })).into_response())
    };
    respond(&admin.node, result.await)
}

/// Send `control` (built around a reply channel) and wait for its answer.
async fn ask<T>(
    admin: &Admin,
    control: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, String>>) -> Control,
) -> Result<T, ApiError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    admin
        .control
        .send(control(reply))
        .map_err(|_| refused("the node is shutting down".into()))?;
    answer
        .await
        .map_err(|_| refused("the node is shutting down".into()))?
        .map_err(refused)
}

/// Compile and validate an uploaded component (off the async threads).
async fn upload(admin: &Admin, body: Body) -> Result<crate::driver::LoadedDriver, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_COMPONENT)
        .await
        .map_err(|_| ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "body_too_large",
            message: format!("a driver component may be at most {MAX_COMPONENT} bytes"),
            field: Some("body"),
            retry_after: false,
        })?;
    let runtime = admin.runtime.clone();
    let label = format!("uploaded component ({} bytes)", bytes.len());
    tokio::task::spawn_blocking(move || runtime.load_bytes(&label, &bytes))
        .await
        .map_err(|e| refused(format!("compiling the component failed: {e}")))?
        .map_err(|e| ApiError::bad_request("body", e.to_string()))
}

/// An admin operation the node could not carry out (409).
fn refused(message: String) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        code: "refused",
        message,
        field: None,
        retry_after: false,
    }
}

/// Read a small JSON body of an admin request.
async fn admin_json(body: Body) -> Result<serde_json::Value, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::bad_request("body", "body too large"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("body", format!("not JSON: {e}")))
}

/// Send `control` to the coordinator and wait for the driver's answer.
async fn ask_driver(
    admin: &Admin,
    control: impl FnOnce(
        tokio::sync::oneshot::Sender<Result<u64, crate::driver::DriverError>>,
    ) -> Control,
) -> Result<u64, ApiError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    admin
        .control
        .send(control(reply))
        .map_err(|_| refused("the node is shutting down".into()))?;
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), answer)
        .await
        .map_err(|_| refused("the driver did not answer within 30 s".into()))?
        .map_err(|_| refused("the node is shutting down".into()))?;
    outcome.map_err(|e| {
        let leader = match &e {
            crate::driver::DriverError::NotLeader(leader) => *leader,
            _ => None,
        };
        ApiError {
            status: StatusCode::CONFLICT,
            code: if leader.is_some() {
                "not_leader"
            } else {
                "refused"
            },
            message: match leader {
                Some(id) => format!(
                    "{}; send it to node {id} ({})",
                    crate::driver::bindings::describe(&e),
                    admin.node.url_of(id).unwrap_or_default()
                ),
                None => crate::driver::bindings::describe(&e),
            },
            field: None,
            retry_after: false,
        }
    })
}

/// `PUT /v1/admin/members` `{"members": [{"id": 1, "address": "HOST:PORT"}, ...]}`:
/// make these nodes the cluster's voters (on the leader).
async fn put_members(State(admin): State<Admin>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        admin.authorize(&headers)?;
        let value = admin_json(body).await?;
        let members: Vec<crate::driver::bindings::Peer> = value
            .get("members")
            .and_then(|m| m.as_array())
            .and_then(|m| {
                m.iter()
                    .map(|p| {
                        Some(crate::driver::bindings::Peer {
                            id: p.get("id")?.as_u64()?,
                            address: p.get("address")?.as_str()?.to_string(),
                        })
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                ApiError::bad_request(
                    "members",
                    "expected {\"members\": [{\"id\": 1, \"address\": \"HOST:PORT\"}, ...]}",
                )
            })?;
        tracing::info!("admin: change membership to {members:?}");
        ask_driver(&admin, |reply| Control::ChangeMembership { members, reply }).await?;
        Ok(axum::Json(admin.node.status()).into_response())
    };
    respond(&admin.node, result.await)
}

/// `POST /v1/admin/leader` `{"to": 2}` (or `{}`): hand leadership over.
async fn post_leader(State(admin): State<Admin>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        admin.authorize(&headers)?;
        let value = admin_json(body).await?;
        let to = match value.get("to") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| ApiError::bad_request("to", "`to` must be a node id"))?,
            ),
        };
        tracing::info!("admin: transfer leadership to {to:?}");
        let leader = ask_driver(&admin, |reply| Control::TransferLeadership { to, reply }).await?;
        Ok(axum::Json(serde_json::json!({ "leader": leader })).into_response())
    };
    respond(&admin.node, result.await)
}
