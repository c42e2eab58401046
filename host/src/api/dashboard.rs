//! `GET /ui`: a live dashboard of the cluster, one self-contained page
//! (`dashboard.html`, embedded in the binary: no external network).
//!
//! The page polls, every second, this node's `/v1/status` for the members
//! and their URLs, then every member's `/v1/status` and `/metrics`, and
//! shows who leads, epochs, drivers (name, version, digest), serving state,
//! timestamps per second, request latency percentiles, window headroom and
//! the elections, swaps, migrations and crashes it sees happen. It works
//! from any node: the monitoring routes answer other origins' reads
//! ([`allow_any_origin`]).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The page.
#[utoipa::path(get, path = "/ui", tag = "monitoring",
    responses((status = 200, description = "The live dashboard (HTML, self-contained)",
        content_type = "text/html; charset=utf-8", body = String)))]
pub(super) async fn dashboard() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}

/// Let a page of another origin read the answer (`Access-Control-Allow-Origin: *`):
/// the dashboard served by one node reads every node's status and metrics.
/// Only for the read-only monitoring routes, which carry no secret a
/// client could not read itself.
pub(super) async fn allow_any_origin(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}
