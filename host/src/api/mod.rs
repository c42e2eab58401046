//! The public HTTP/JSON API (docs/architecture.md §7).
//!
//! Every answer is JSON, errors included: `{"error": {"code", "message"}}`,
//! with `field` naming the offending input on a 400. A client's mistake is
//! never a 500; a node that is not serving answers 503 with `Retry-After`.
//!
//! The timestamp and monitoring endpoints are in `public`; the operator's
//! endpoints are in `admin` and `migration`, all behind the one token check
//! of `auth`.

use crate::node::{Node, ServeError};
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use std::sync::Arc;

mod admin;
mod auth;
mod dashboard;
mod migration;
pub mod openapi;

use openapi::Scope;
mod public;

pub use admin::{AdminConfig, MAX_COMPONENT};

/// Largest request body accepted; a timestamp request is a few bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// Every endpoint of a node, on one address. Unknown paths answer 404 and
/// known paths with another method 405, both without asking for a token.
pub fn router(node: Arc<Node>, config: AdminConfig) -> Router {
    let scope = Scope {
        timestamps: true,
        admin: config.token.is_some(),
        faults: config.fault_injection,
    };
    finish(
        public_routes(node.clone()).merge(admin_routes(node, config)),
        scope,
    )
}

/// What `--listen` serves when the admin API has an address of its own
/// (`--admin-listen`): everything but the admin API, whose paths answer 404
/// `admin_elsewhere` here whatever the token, so that a public address
/// exposes no admin surface at all.
pub fn public_router(node: Arc<Node>) -> Router {
    let scope = Scope {
        timestamps: true,
        admin: false,
        faults: false,
    };
    finish(
        public_routes(node).route("/v1/admin/{*path}", any(public::admin_elsewhere)),
        scope,
    )
}

/// What `--admin-listen` serves: the admin API, and the monitoring
/// endpoints (`/v1/status`, `/healthz`, `/readyz`, `/metrics`) so that an
/// admin tool can see what its calls did on the address it was given. No
/// timestamps: clients use `--listen`.
pub fn admin_router(node: Arc<Node>, config: AdminConfig) -> Router {
    let scope = Scope {
        timestamps: false,
        admin: config.token.is_some(),
        faults: config.fault_injection,
    };
    finish(
        monitoring_routes(node.clone()).merge(admin_routes(node, config)),
        scope,
    )
}

/// The timestamp and monitoring endpoints (no token).
fn public_routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/timestamps", post(public::post_timestamps))
        .route("/v1/timestamp", get(public::get_timestamp))
        .with_state(node.clone())
        .merge(monitoring_routes(node))
}

/// The read-only endpoints an operator or a tool watches a node through.
fn monitoring_routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/status", get(public::status))
        .route("/healthz", get(public::healthz))
        .route("/readyz", get(public::readyz))
        .route("/metrics", get(public::metrics))
        .layer(middleware::map_response(dashboard::allow_any_origin))
        .route("/ui", get(dashboard::dashboard))
        .with_state(node)
}

/// `/v1/admin/*`, every route behind the token check. Fault injection
/// exists only when [`AdminConfig::fault_injection`] is on: otherwise its
/// path answers 404 `faults_off`, before any token check, so a production
/// node has no way to step its clock or fail its storage from outside.
fn admin_routes(node: Arc<Node>, config: AdminConfig) -> Router {
    let guard = auth::Guard::new(config.token.as_deref(), node.clone());
    let fault_injection = config.fault_injection;
    let mut admin = Router::new();
    if fault_injection {
        admin = admin.route(
            "/v1/admin/faults",
            get(admin::get_faults).put(admin::put_faults),
        );
    }
    admin = admin
        .route("/v1/admin/driver", put(admin::put_driver))
        .route("/v1/admin/members", put(admin::put_members))
        .route("/v1/admin/leader", post(admin::post_leader))
        .route(
            "/v1/admin/migration/seal",
            post(migration::seal).delete(migration::unseal),
        )
        .route("/v1/admin/migration/read", post(migration::read))
        .route("/v1/admin/migration/prepare", post(migration::prepare))
        .route("/v1/admin/migration/driver", put(migration::switch))
        // Only the routes added above are guarded, so this stays after the
        // last of them. It also wraps each route's default method fallback,
        // which `method_not_allowed_fallback` below then replaces unguarded:
        // a wrong method on an admin path is a 405, not a 401.
        .route_layer(middleware::from_fn_with_state(guard, auth::require_token));
    if !fault_injection {
        admin = admin.route("/v1/admin/faults", any(admin::faults_off));
    }
    admin.with_state(admin::Admin::new(node, config))
}

/// The answers of unknown paths and methods, the same on every listener,
/// and the OpenAPI document of what `router` serves (`scope`).
fn finish(router: Router, scope: Scope) -> Router {
    openapi::with_document(router, scope)
        .fallback(public::not_found)
        .method_not_allowed_fallback(public::method_not_allowed)
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

/// A JSON value as a `u64`, if it is a whole number from 0 to 2^64 - 1,
/// written as an integer or with a zero fraction (`5.0` is an integer in
/// JSON Schema, so the OpenAPI document's integers include it).
fn whole_number(value: &serde_json::Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..u64::MAX as f64).contains(f))
            .map(|f| f as u64)
    })
}

/// The answer to a handler's result: the response, or the error as JSON.
fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}
