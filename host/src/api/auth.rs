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
    /// Counts refusals (`tsohost_admin_refusals_total`).
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
        if admits(digest, bearer(headers)) {
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

/// The token of `Authorization: Bearer <token>`; empty when there is none.
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Whether `given` is the token whose SHA-256 is `digest`. Both sides are
/// digests of 32 bytes compared with `subtle`'s constant-time equality: the
/// time taken depends neither on where a guess first differs nor on its
/// length, so timing cannot be used to guess the token byte by byte.
fn admits(digest: &[u8; 32], given: &str) -> bool {
    let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    bool::from(given[..].ct_eq(&digest[..]))
}

/// Hand the request to its admin handler only if [`Guard::check`] admits it.
pub(super) async fn require_token(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    match guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            guard.node.metrics.admin_refusals_total.inc();
            respond(Err(refusal))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const TOKEN: &str = "the-admin-token-0123456789";

    fn digest() -> [u8; 32] {
        Sha256::digest(TOKEN.as_bytes()).into()
    }

    #[test]
    fn only_the_exact_token_is_admitted() {
        assert!(admits(&digest(), TOKEN));
        let mut last_byte_wrong = TOKEN.to_string();
        last_byte_wrong.pop();
        last_byte_wrong.push('X');
        for wrong in [
            "",
            "the-admin-token",
            &TOKEN[..TOKEN.len() - 1],
            &last_byte_wrong,
            &format!("{TOKEN}0"),
            &format!(" {TOKEN}"),
            &TOKEN.to_uppercase(),
        ] {
            assert!(!admits(&digest(), wrong), "{wrong:?} was admitted");
        }
    }

    #[test]
    fn the_comparison_is_of_fixed_size_digests_in_constant_time() {
        // What makes the check constant-time: equal-length digests (so a
        // guess's length does not matter) compared by `subtle`, not `==`
        // on the tokens, which stops at the first differing byte.
        let source = include_str!("auth.rs");
        let body = source
            .split("fn admits(")
            .nth(1)
            .and_then(|rest| rest.split("\n}\n").next())
            .expect("fn admits");
        assert!(body.contains("Sha256::digest(given"), "{body}");
        assert!(body.contains(".ct_eq(&digest[..])"), "{body}");
        assert!(!body.contains("=="), "{body}");
    }

    #[test]
    fn the_token_is_read_from_a_bearer_header_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), "");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), "");
        let value = HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap();
        headers.insert(header::AUTHORIZATION, value);
        assert_eq!(bearer(&headers), TOKEN);
        assert!(admits(&digest(), bearer(&headers)));
    }
}
