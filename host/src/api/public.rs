//! The endpoints anyone may call: timestamps, status, probes and metrics,
//! and the JSON answers to unknown routes and methods.

use super::{ApiError, MAX_BODY, respond};
use crate::api::openapi::ErrorAnswer;
use crate::metrics::Route;
use crate::node::{Node, ServeError};
use crate::timestamp::{LOGICAL_PER_MS, RangeJson};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tsohost_client::status::Status;

/// `count` from JSON: a whole number in 1..=2^18, or a 400 naming it.
fn parse_count(value: Option<&serde_json::Value>) -> Result<u64, ApiError> {
    let Some(value) = value else { return Ok(1) };
    match super::whole_number(value) {
        Some(n) if (1..=LOGICAL_PER_MS).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(
            "count",
            format!("count must be a whole number from 1 to {LOGICAL_PER_MS}, got {value}"),
        )),
    }
}

#[utoipa::path(post, path = "/v1/timestamps", tag = "timestamps",
    request_body(content = crate::api::openapi::CountBody, content_type = "application/json",
        description = "Empty, or `{\"count\": N}`"),
    responses(
        (status = 200, description = "The range `[timestamp, timestamp + count)`", body = RangeJson),
        (status = 307, description = "Not the leader; the leader is in `Location`",
            body = crate::api::openapi::RedirectAnswer, headers(("Location" = String))),
        (status = 400, description = "A bad body or count", body = ErrorAnswer),
        (status = 413, description = "A body over 16 KiB", body = ErrorAnswer),
        (status = 503, description = "Not serving now; retry", body = ErrorAnswer,
            headers(("Retry-After" = u32))),
    ))]
pub(super) async fn post_timestamps(
    State(node): State<Arc<Node>>,
    uri: Uri,
    body: Body,
) -> Response {
    let started = Instant::now();
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
    counted(&node, Route::PostTimestamps, started, respond(result.await))
}

#[utoipa::path(get, path = "/v1/timestamp", tag = "timestamps",
    params(("count" = Option<u64>, Query, description = "How many consecutive timestamps (default 1)",
        minimum = 1, maximum = 262144)),
    responses(
        (status = 200, description = "The range `[timestamp, timestamp + count)`", body = RangeJson),
        (status = 307, description = "Not the leader; the leader is in `Location`",
            body = crate::api::openapi::RedirectAnswer, headers(("Location" = String))),
        (status = 400, description = "A bad query", body = ErrorAnswer),
        (status = 503, description = "Not serving now; retry", body = ErrorAnswer,
            headers(("Retry-After" = u32))),
    ))]
pub(super) async fn get_timestamp(
    State(node): State<Arc<Node>>,
    uri: Uri,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let started = Instant::now();
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
    counted(&node, Route::GetTimestamp, started, respond(result.await))
}

/// Count and time the answer of a timestamp request begun at `started`.
fn counted(node: &Node, route: Route, started: Instant, response: Response) -> Response {
    node.metrics
        .route(route)
        .done(response.status().as_u16(), started.elapsed());
    response
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

#[utoipa::path(get, path = "/v1/status", tag = "monitoring",
    responses((status = 200, description = "This node's view of itself", body = Status)))]
pub(super) async fn status(State(node): State<Arc<Node>>) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(node.status()),
    )
        .into_response()
}

#[utoipa::path(get, path = "/healthz", tag = "monitoring",
    responses((status = 200, description = "The process runs", body = crate::api::openapi::Health)))]
pub(super) async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

#[utoipa::path(get, path = "/readyz", tag = "monitoring",
    responses(
        (status = 200, description = "This node serves timestamps", body = crate::api::openapi::Health),
        (status = 503, description = "It does not", body = ErrorAnswer, headers(("Retry-After" = u32))),
    ))]
pub(super) async fn readyz(State(node): State<Arc<Node>>) -> Response {
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

#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "Prometheus text format 0.0.4",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
pub(super) async fn metrics(State(node): State<Arc<Node>>) -> Response {
    node.refresh_metrics();
    node.refresh_driver_stats().await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        node.metrics.render(),
    )
        .into_response()
}

pub(super) async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such endpoint; see /v1/timestamps, /v1/timestamp, /v1/status".into(),
        field: None,
        retry_after: false,
    }
}

/// `/v1/admin/*` on the public address of a node that serves its admin API
/// on `--admin-listen`: it is not here, and where it is is not said.
pub(super) async fn admin_elsewhere() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "admin_elsewhere",
        message: "this node serves its admin API only on its --admin-listen address, not here"
            .into(),
        field: None,
        retry_after: false,
    }
}

pub(super) async fn method_not_allowed() -> ApiError {
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
