//! `/v1/admin/migration/*`: the node's half of moving a cluster to another
//! driver (see [`crate::migration`]); `tsohost cluster migrate` calls these
//! on every node. As for every admin route, [`super::auth`] has checked the
//! token before these run.

use super::ApiError;
use super::admin::{Admin, ask, ask_driver, upload};
use super::respond;
use crate::api::openapi::{AdminRefusals, UploadRefusals};
use crate::node::Control;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use tsohost_client::status::Status;

/// `POST /v1/admin/migration/prepare` with a component's bytes: compile and
/// check it as the switch would (another driver than the running one),
/// changing nothing; the switch then finds it compiled.
#[utoipa::path(post, path = "/v1/admin/migration/prepare", tag = "admin", security(("admin_token" = [])),
    request_body(content = inline(crate::api::openapi::WasmComponent), content_type = "application/wasm",
        description = "The driver to migrate to"),
    responses(
        (status = 200, description = "Compiled and checked", body = crate::api::openapi::PreparedAnswer),
        UploadRefusals,
        AdminRefusals,
    ))]
pub async fn prepare(State(admin): State<Admin>, body: Body) -> Response {
    let result = async {
        let loaded = upload(&admin, body).await?;
        let info = ask(&admin, |reply| Control::Prepare {
            driver: Box::new(loaded),
            reply,
        })
        .await?;
        Ok(
            axum::Json(serde_json::json!({ "name": info.name, "version": info.version }))
                .into_response(),
        )
    };
    respond(result.await)
}

/// `POST /v1/admin/migration/seal`: stop serving under the running driver,
/// durably; answers the highest high water this node held.
#[utoipa::path(post, path = "/v1/admin/migration/seal", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Sealed", body = crate::api::openapi::SealAnswer),
        AdminRefusals,
    ))]
pub async fn seal(State(admin): State<Admin>) -> Response {
    let result = async {
        tracing::warn!("admin: seal for a migration");
        let held = ask(&admin, |reply| Control::Seal { reply }).await?;
        Ok(axum::Json(serde_json::json!({
            "node_id": admin.node.node_id,
            "high_water_ms": held,
            "status": admin.node.status(),
        }))
        .into_response())
    };
    respond(result.await)
}

/// `DELETE /v1/admin/migration/seal`: serve again under the sealed driver.
#[utoipa::path(delete, path = "/v1/admin/migration/seal", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Serving again under the sealed driver", body = Status),
        AdminRefusals,
    ))]
pub async fn unseal(State(admin): State<Admin>) -> Response {
    let result = async {
        tracing::warn!("admin: unseal (migration given up)");
        ask(&admin, |reply| Control::Unseal { reply }).await?;
        Ok(axum::Json(admin.node.status()).into_response())
    };
    respond(result.await)
}

/// `POST /v1/admin/migration/read`: on the sealed driver's leader, its high
/// water read linearizably; other nodes answer 409 `not_leader`.
#[utoipa::path(post, path = "/v1/admin/migration/read", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "The sealed driver's high water", body = crate::api::openapi::HighWaterAnswer),
        AdminRefusals,
    ))]
pub async fn read(State(admin): State<Admin>) -> Response {
    let result = async {
        let high_water = ask_driver(&admin, |reply| Control::ReadHighWater { reply }).await?;
        Ok(axum::Json(serde_json::json!({ "high_water_ms": high_water })).into_response())
    };
    respond(result.await)
}

#[derive(serde::Deserialize)]
pub struct SwitchQuery {
    /// Every timestamp served after the switch lies above this (ms).
    floor: u64,
}

/// `PUT /v1/admin/migration/driver?floor=MS` with a component's bytes:
/// replace the sealed driver by it, on fresh storage, above `floor`.
#[utoipa::path(put, path = "/v1/admin/migration/driver", tag = "admin", security(("admin_token" = [])),
    params(("floor" = u64, Query, description = "Every timestamp served after the switch lies above this, Unix ms")),
    request_body(content = inline(crate::api::openapi::WasmComponent), content_type = "application/wasm",
        description = "The driver to migrate to"),
    responses(
        (status = 200, description = "Switched: the new driver", body = crate::api::openapi::DriverAnswer),
        UploadRefusals,
        AdminRefusals,
    ))]
pub async fn switch(
    State(admin): State<Admin>,
    query: Result<Query<SwitchQuery>, QueryRejection>,
    body: Body,
) -> Response {
    let result = async {
        let Query(SwitchQuery { floor }) = query.map_err(|e| {
            ApiError::bad_request(
                "floor",
                format!("{e}; expected ?floor=MS, the high water the old driver was sealed at"),
            )
        })?;
        let loaded = upload(&admin, body).await?;
        tracing::warn!("admin: migrate to {} above {floor} ms", loaded.source);
        let status = ask(&admin, |reply| Control::Migrate {
            driver: Box::new(loaded),
            floor,
            reply,
        })
        .await?;
        Ok(axum::Json(serde_json::json!({ "driver": status })).into_response())
    };
    respond(result.await)
}
