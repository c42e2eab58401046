//! The admin token check: one middleware in front of every admin route, so
//! a request without the token is refused before a handler reads its body,
//! and no handler can forget the check.
//!
//! The given and the configured token are compared as SHA-256 digests, in
//! constant time: how long a refusal takes tells neither how much of a
//! guess was right nor how long the token is.

use super::{ApiError, respond};
use crate::node::Node;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// State of [`require_token`].
#[derive(Clone)]
pub(super) struct Guard {
    /// SHA-256 of the configured token; `None` turns the admin API off.
    digest: Option<[u8; 32]>,
    /// Counts refusals among the client errors, as the handlers count theirs.
    node: Arc<Node>,
}

impl Guard {
    pub(super) fn new(token: Option<&str>, node: Arc<Node>) -> Guard {
        Guard {
            digest: token.map(|token| Sha256::digest(token.as_bytes()).into()),
            node,
        }
    }

    /// The admin API is off (404 `admin_off`) without a configured token,
    /// whatever the request carries; when on, it needs
    /// `Authorization: Bearer <token>` (else 401 `unauthorized`).
    fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(digest) = &self.digest else {
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
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        if bool::from(given[..].ct_eq(&digest[..])) {
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
}

/// Hand the request to its admin handler only if [`Guard::check`] admits it.
pub(super) async fn require_token(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    match guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => respond(&guard.node, Err(refusal)),
    }
}
