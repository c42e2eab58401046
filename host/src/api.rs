//! The public HTTP/JSON API (DESIGN §7).
//!
//! Every answer is JSON, errors included: `{"error": {"code", "message"}}`,
//! with `field` naming the offending input on a 400. A client's mistake is
//! never a 500; a node that is not serving answers 503 with `Retry-After`.

use crate::node::{Node, ServeError};
use crate::timestamp::{LOGICAL_PER_MS, RangeJson};
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::Arc;

/// Largest request body accepted; a timestamp request is a few bytes.
pub const MAX_BODY: usize = 16 * 1024;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/timestamps", post(post_timestamps))
        .route("/v1/timestamp", get(get_timestamp))
        .route("/v1/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(node)
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

async fn post_timestamps(State(node): State<Arc<Node>>, body: Body) -> Response {
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
        grant(&node, count).await
    };
    respond(&node, result.await)
}

async fn get_timestamp(
    State(node): State<Arc<Node>>,
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
        grant(&node, count).await
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

async fn grant(node: &Node, count: u64) -> Result<Response, ApiError> {
    let grant = node.timestamps(count).await?;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(RangeJson::new(grant.first, grant.count)),
    )
        .into_response())
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
