//! `/v1/admin/*` except migration: fault injection, driver hot swap,
//! membership and leadership. Every request reaching these handlers has
//! passed [`super::auth`]; the handlers do not check the token again.

use super::{ApiError, MAX_BODY, respond};
use crate::api::openapi::{AdminRefusals, ErrorAnswer, UploadRefusals};
use crate::driver::Runtime;
use crate::node::{Control, Node};
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio::sync::mpsc;
use tsohost_client::admin::Faults;
use tsohost_client::status::Status;

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
    /// Whether `/v1/admin/faults` exists (`--enable-fault-injection`): it
    /// can step the clock, fail storage and crash the driver, which only a
    /// test or `tsohost chaos` should be able to do.
    pub fault_injection: bool,
}

/// Largest driver component accepted by `PUT /v1/admin/driver`.
pub const MAX_COMPONENT: usize = 64 << 20;

/// State of the admin endpoints (the token stays with [`super::auth`]).
#[derive(Clone)]
pub(super) struct Admin {
    pub(super) node: Arc<Node>,
    runtime: Runtime,
    control: mpsc::UnboundedSender<Control>,
    storage_faults: Arc<crate::storage::Failpoint>,
    clock: Arc<crate::clock::SkewedClock>,
    guest_faults: Arc<crate::driver::fault::GuestFaults>,
}

impl Admin {
    pub(super) fn new(node: Arc<Node>, config: AdminConfig) -> Admin {
        Admin {
            node,
            runtime: config.runtime,
            control: config.control,
            storage_faults: config.storage_faults,
            clock: config.clock,
            guest_faults: config.guest_faults,
        }
    }

    /// The faults in force, as `GET /v1/admin/faults` shows them.
    fn faults(&self) -> serde_json::Value {
        serde_json::json!({
            "blocked_peers": self.node.network.as_ref().map(|n| n.faults.blocked()),
            "dropped_from": self.node.network.as_ref().map(|n| n.faults.dropped_from()),
            "fail_storage_writes": self.storage_faults.pending(),
            "fail_storage_reads": self.storage_faults.pending_reads(),
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

/// `/v1/admin/faults` on a node started without `--enable-fault-injection`:
/// 404, whatever the method and the token.
pub(super) async fn faults_off() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "faults_off",
        message: "fault injection is off: this node was started without \
                  --enable-fault-injection (for tests and `tsohost chaos` only)"
            .into(),
        field: None,
        retry_after: false,
    }
}

#[utoipa::path(get, path = "/v1/admin/faults", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "The faults in force", body = Faults),
        AdminRefusals,
    ))]
pub(super) async fn get_faults(State(admin): State<Admin>) -> Response {
    axum::Json(admin.faults()).into_response()
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
    /// Fail this many of the next storage reads; 0 heals.
    fail_storage_reads: Option<u64>,
    /// Step this node's wall clock by this much from the system's; 0 heals.
    clock_offset_ms: Option<i64>,
    /// Make the running driver trap or hang in its next call into the
    /// host, or exhaust its memory with the next peer message.
    guest: Option<crate::driver::fault::GuestFault>,
}

/// `PUT /v1/admin/faults`: fault injection for tests and `tsohost chaos`
/// (see [`FaultsBody`]); answers the faults now in force.
#[utoipa::path(put, path = "/v1/admin/faults", tag = "admin", security(("admin_token" = [])),
    request_body(content = Faults, description = "Each field optional: it sets that fault; `[]` or 0 heals"),
    responses(
        (status = 200, description = "The faults in force", body = Faults),
        (status = 400, description = "A bad body", body = ErrorAnswer),
        AdminRefusals,
    ))]
pub(super) async fn put_faults(State(admin): State<Admin>, body: Body) -> Response {
    let result = async {
        let bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| ApiError::bad_request("body", "body too large"))?;
        let faults: FaultsBody = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(
                "body",
                format!(
                    "{e}; expected {{\"blocked_peers\": [node ids], \"dropped_from\": [node ids], \
                     \"fail_storage_writes\": N, \"fail_storage_reads\": N, \
                     \"clock_offset_ms\": N, \"guest\": \"trap\", \
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
        if let Some(n) = faults.fail_storage_reads {
            tracing::warn!("fault injection: failing the next {n} storage reads");
            admin.storage_faults.fail_reads(n);
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
    respond(result.await)
}

/// `PUT /v1/admin/driver` with the component's bytes: hot-swap the running
/// driver for a new build of it. The component is compiled and validated
/// while the old driver keeps serving; a component that fails either, or
/// whose `init` fails, leaves the old driver serving and the error is
/// returned (once the old build, started again, serves or follows a leader).
#[utoipa::path(put, path = "/v1/admin/driver", tag = "admin", security(("admin_token" = [])),
    request_body(content = inline(crate::api::openapi::WasmComponent), content_type = "application/wasm",
        description = "A new build of the running driver"),
    responses(
        (status = 200, description = "Swapped: the new driver", body = crate::api::openapi::DriverAnswer),
        UploadRefusals,
        AdminRefusals,
    ))]
pub(super) async fn put_driver(State(admin): State<Admin>, body: Body) -> Response {
    let result = async {
        let loaded = upload(&admin, body).await?;
        let status = ask(&admin, |reply| Control::Swap {
            driver: Box::new(loaded),
            reply,
        })
        .await?;
        Ok(axum::Json(serde_json::json!({ "driver": status })).into_response())
    };
    respond(result.await)
}

/// Send `control` (built around a reply channel) and wait for its answer.
pub(super) async fn ask<T>(
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
pub(super) async fn upload(
    admin: &Admin,
    body: Body,
) -> Result<crate::driver::LoadedDriver, ApiError> {
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
pub(super) async fn ask_driver(
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
#[utoipa::path(put, path = "/v1/admin/members", tag = "admin", security(("admin_token" = [])),
    request_body(content = crate::api::openapi::MembersBody),
    responses(
        (status = 200, description = "The new membership took effect", body = Status),
        (status = 400, description = "A bad body", body = ErrorAnswer),
        AdminRefusals,
    ))]
pub(super) async fn put_members(State(admin): State<Admin>, body: Body) -> Response {
    let result = async {
        let value = admin_json(body).await?;
        let members: Vec<crate::driver::bindings::Peer> = value
            .get("members")
            .and_then(|m| m.as_array())
            .and_then(|m| {
                m.iter()
                    .map(|p| {
                        Some(crate::driver::bindings::Peer {
                            id: super::whole_number(p.get("id")?)?,
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
    respond(result.await)
}

/// `POST /v1/admin/leader` `{"to": 2}` (or `{}`): hand leadership over.
#[utoipa::path(post, path = "/v1/admin/leader", tag = "admin", security(("admin_token" = [])),
    request_body(content = crate::api::openapi::LeaderBody),
    responses(
        (status = 200, description = "Handed over", body = crate::api::openapi::LeaderAnswer),
        (status = 400, description = "A bad body", body = ErrorAnswer),
        AdminRefusals,
    ))]
pub(super) async fn post_leader(State(admin): State<Admin>, body: Body) -> Response {
    let result = async {
        let value = admin_json(body).await?;
        let to = match value.get("to") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                super::whole_number(v)
                    .ok_or_else(|| ApiError::bad_request("to", "`to` must be a node id"))?,
            ),
        };
        tracing::info!("admin: transfer leadership to {to:?}");
        let leader = ask_driver(&admin, |reply| Control::TransferLeadership { to, reply }).await?;
        Ok(axum::Json(serde_json::json!({ "leader": leader })).into_response())
    };
    respond(result.await)
}
