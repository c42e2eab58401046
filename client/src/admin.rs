//! The admin API of one node (`/v1/admin/*`), typed: hot swaps, the steps
//! of a migration, membership, leadership transfer and fault injection.
//!
//! [`Admin`] talks to exactly one node: admin operations act on the node
//! they are sent to (a seal seals that node, a fault faults that node), so
//! unlike [`crate::Client`] it never follows redirects, never retries and
//! never asks another node. Membership changes and leadership transfers must
//! be sent to the leader; another node refuses them with the code
//! `not_leader` (see [`ApiError`]).
//!
//! Every call opens a fresh connection (admin calls are rare, and a node
//! restarted between two calls is then no special case) and is bounded by
//! the client's timeout, connecting included.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tsohost_client::admin::AdminError> {
//! use tsohost_client::admin::{Admin, Faults};
//! let admin = Admin::new("http://127.0.0.1:7401", "the-admin-token")?;
//! let leader = admin.transfer_leader(Some(2)).await?;
//! admin.set_faults(&Faults { fail_storage_writes: Some(3), ..Faults::default() }).await?;
//! # Ok(()) }
//! ```

use crate::connection::{self, Answer, ClientError, Connection};
use crate::status::{DriverStatus, Status};
use crate::tls::TlsConfig;
use bytes::Bytes;
use hyper::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The timeout of [`Admin::new`]: long enough for a node to compile a large
/// component (a Python driver takes seconds) and for the driver to answer a
/// membership change or a switch (the node gives it 30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one node's admin API, holding its URL and bearer token.
/// Cheap to clone; each call is independent.
#[derive(Debug, Clone)]
pub struct Admin {
    url: String,
    token: String,
    timeout: Duration,
    /// For an `https://` node: the CA to trust and an optional client certificate.
    tls: Option<TlsConfig>,
}

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The node could not be reached, or the connection broke: the operation
    /// may or may not have happened (every admin step is idempotent, so
    /// asking again is safe).
    #[error(transparent)]
    Connection(#[from] ClientError),
    /// No answer within the client's timeout; as for
    /// [`AdminError::Connection`], the operation may have happened.
    #[error("{url} did not answer within {timeout:?}")]
    Timeout {
        /// The node asked.
        url: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The node answered with its JSON error: it did not carry the
    /// operation out.
    #[error("{url} refused: {error}")]
    Api {
        /// The node that refused.
        url: String,
        /// What it said.
        error: ApiError,
    },
    /// The node answered something this client does not understand (not
    /// the API's JSON): another program on that port, or a different
    /// version of tsohost.
    #[error("{url} answered {status} with an unexpected body ({reason}): {body}")]
    Unexpected {
        /// The node asked.
        url: String,
        /// The HTTP status of the answer.
        status: u16,
        /// Why the body was not understood.
        reason: String,
        /// The body, lossily decoded.
        body: String,
    },
}

impl AdminError {
    /// The node's error, if it answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            AdminError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The error code the node answered (`refused`, `not_leader`,
    /// `bad_request`, `unauthorized`, ...), if it answered with one.
    pub fn code(&self) -> Option<&str> {
        self.api().map(|e| e.code.as_str())
    }
}

/// A node's error answer, `{"error": {"code", "message", "field"?}}`, with
/// the HTTP status it came with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status: 400 for a bad input, 401 for a bad token, 404 when
    /// the admin API is off, 409 when the node cannot carry the operation
    /// out, 413 for a component too large.
    pub status: u16,
    /// The machine-readable reason (`bad_request`, `unauthorized`,
    /// `admin_off`, `refused`, `not_leader`, `no_cluster`, ...).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// On a 400, the input that was wrong (`body`, `floor`, `members`, ...).
    pub field: Option<String>,
}

/// What a node injects (`GET`/`PUT /v1/admin/faults`). Each field is
/// optional: in a `PUT`, a field left `None` leaves that fault as it is and
/// `Some` of an empty list or 0 heals it; the answer (and `GET`) has every
/// field the node supports, `None` where it does not apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Faults {
    /// Drop all peer traffic to and from these nodes (`None` in answers of
    /// a single node, which has no peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_peers: Option<Vec<u64>>,
    /// Drop what these nodes send, but keep sending to them: a one-way
    /// partition (`None` in answers of a single node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_from: Option<Vec<u64>>,
    /// Fail this many of the next storage writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_storage_writes: Option<u64>,
    /// Fail this many of the next storage reads (a driver reads at
    /// (re)instantiation: combine with `guest: trap` to meet them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_storage_reads: Option<u64>,
    /// Step the node's wall clock by this much from the system's, in ms
    /// (at most a minute either way); leases run on the monotonic clock and
    /// are not moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    /// A fault waiting for the running driver (in answers: not fired yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestFault>,
}

/// A fault injected into the running driver, fired inside the guest so that
/// the real failure path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum GuestFault {
    /// The driver's next call into the host traps.
    Trap,
    /// The driver's next call into the host blocks past its time limit.
    Hang,
    /// The driver's next peer message is delivered larger than its memory
    /// cap, so its allocator fails as a guest allocating without bound does.
    Exhaust,
}

/// The answer of [`Admin::prepare`]: the checked component's driver.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Prepared {
    /// The driver's name, as its `info` reports it.
    pub name: String,
    /// The driver's version, as its `info` reports it.
    pub version: String,
}

/// `{"driver": ...}`: the answer of a swap and of a switch.
#[derive(Debug, Deserialize)]
struct DriverAnswer {
    driver: DriverStatus,
}

/// `{"high_water_ms": ...}`: the answer of a seal and of a read.
#[derive(Debug, Deserialize)]
struct HighWater {
    high_water_ms: u64,
}

#[derive(Debug, Deserialize)]
struct LeaderAnswer {
    leader: u64,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
    #[serde(default)]
    field: Option<String>,
}

impl Admin {
    /// A client of the node at `url` (`http(s)://HOST:PORT`) with the admin
    /// `token` and [`DEFAULT_TIMEOUT`]. Only the URL is checked; nothing is
    /// contacted until the first call.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Result<Admin, AdminError> {
        let url = url.into();
        connection::authority(&url)?;
        Ok(Admin {
            url: url.trim_end_matches('/').to_string(),
            token: token.into(),
            timeout: DEFAULT_TIMEOUT,
            tls: None,
        })
    }

    /// The same client speaking `https://` URLs with `tls` (the CA that
    /// signed the node's certificate, and a client certificate if the node
    /// requires one).
    pub fn with_tls(mut self, tls: Option<TlsConfig>) -> Admin {
        self.tls = tls;
        self
    }

    /// The same client with another timeout per call.
    pub fn with_timeout(mut self, timeout: Duration) -> Admin {
        self.timeout = timeout;
        self
    }

    /// The node's URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET /v1/status` of this node (no token needed; here so that a tool
    /// holding an [`Admin`] can see what its calls did).
    pub async fn status(&self) -> Result<Status, AdminError> {
        self.call(Method::GET, "/v1/status", Bytes::new()).await
    }

    /// `PUT /v1/admin/driver`: hot-swap the running driver for `component`,
    /// a new build of the same driver. A refused component leaves the old
    /// driver serving. Answers the driver now running.
    pub async fn swap(&self, component: impl Into<Bytes>) -> Result<DriverStatus, AdminError> {
        let answer: DriverAnswer = self
            .call(Method::PUT, "/v1/admin/driver", component.into())
            .await?;
        Ok(answer.driver)
    }

    /// `POST /v1/admin/migration/prepare`: compile and check `component` as
    /// a migration's switch would, changing nothing (the switch then finds
    /// it compiled).
    pub async fn prepare(&self, component: impl Into<Bytes>) -> Result<Prepared, AdminError> {
        self.call(
            Method::POST,
            "/v1/admin/migration/prepare",
            component.into(),
        )
        .await
    }

    /// `POST /v1/admin/migration/seal`: stop serving under the running
    /// driver, durably, until a switch or [`Admin::unseal`]. Answers the
    /// highest high water (ms) this node held; idempotent.
    pub async fn seal(&self) -> Result<u64, AdminError> {
        self.high_water(Method::POST, "/v1/admin/migration/seal")
            .await
    }

    /// `DELETE /v1/admin/migration/seal`: serve again under the sealed
    /// driver (a migration given up before this node switched). Answers the
    /// node's status.
    pub async fn unseal(&self) -> Result<Status, AdminError> {
        self.call(Method::DELETE, "/v1/admin/migration/seal", Bytes::new())
            .await
    }

    /// `POST /v1/admin/migration/read`: the sealed driver's high water (ms),
    /// read linearizably; only its leader answers, others refuse with
    /// `not_leader`.
    pub async fn read_high_water(&self) -> Result<u64, AdminError> {
        self.high_water(Method::POST, "/v1/admin/migration/read")
            .await
    }

    /// `PUT /v1/admin/migration/driver?floor=MS`: replace this sealed
    /// node's driver by `component`, on fresh storage, serving only above
    /// `floor` (ms), which must be at least every high water the old driver
    /// held. Answers the driver now running.
    pub async fn switch(
        &self,
        component: impl Into<Bytes>,
        floor: u64,
    ) -> Result<DriverStatus, AdminError> {
        let path = format!("/v1/admin/migration/driver?floor={floor}");
        let answer: DriverAnswer = self.call(Method::PUT, &path, component.into()).await?;
        Ok(answer.driver)
    }

    /// `PUT /v1/admin/members`, on the leader: make exactly these
    /// `(node id, peer address HOST:PORT)` the cluster's voters. Answers the
    /// leader's status after the change.
    pub async fn set_members(&self, members: &[(u64, String)]) -> Result<Status, AdminError> {
        let members: Vec<_> = members
            .iter()
            .map(|(id, address)| serde_json::json!({ "id": id, "address": address }))
            .collect();
        let body = serde_json::json!({ "members": members }).to_string();
        self.call(Method::PUT, "/v1/admin/members", Bytes::from(body))
            .await
    }

    /// `POST /v1/admin/leader`, on the leader: hand leadership to node `to`
    /// (or, `None`, to whichever node the driver picks). Answers the node
    /// the driver reports leading afterwards; a driver may elect another
    /// node than the one named.
    pub async fn transfer_leader(&self, to: Option<u64>) -> Result<u64, AdminError> {
        let body = match to {
            Some(id) => serde_json::json!({ "to": id }),
            None => serde_json::json!({}),
        };
        let answer: LeaderAnswer = self
            .call(
                Method::POST,
                "/v1/admin/leader",
                Bytes::from(body.to_string()),
            )
            .await?;
        Ok(answer.leader)
    }

    /// `GET /v1/admin/faults`: the faults in force.
    pub async fn faults(&self) -> Result<Faults, AdminError> {
        self.call(Method::GET, "/v1/admin/faults", Bytes::new())
            .await
    }

    /// `PUT /v1/admin/faults`: set the fields of `faults` that are `Some`
    /// (the others stay); answers the faults now in force. Peer faults on a
    /// single node are refused (`no_cluster`).
    pub async fn set_faults(&self, faults: &Faults) -> Result<Faults, AdminError> {
        let body = serde_json::to_string(faults).expect("faults serialize");
        self.call(Method::PUT, "/v1/admin/faults", Bytes::from(body))
            .await
    }

    /// A bodiless request answering `{"high_water_ms": ...}`.
    async fn high_water(&self, method: Method, path: &str) -> Result<u64, AdminError> {
        let answer: HighWater = self.call(method, path, Bytes::new()).await?;
        Ok(answer.high_water_ms)
    }

    /// One request with the token, within the timeout, decoded.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<T, AdminError> {
        let request = async {
            let mut conn = Connection::open_with(&self.url, self.tls.as_ref()).await?;
            conn.send_with(method, path, body, Some(&self.token)).await
        };
        let answer = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| AdminError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            })??;
        decode(&self.url, &answer)
    }
}

/// A 2xx answer's body as `T`; any other answer as the node's
/// [`ApiError`], or [`AdminError::Unexpected`] when it is not one.
fn decode<T: DeserializeOwned>(url: &str, answer: &Answer) -> Result<T, AdminError> {
    let unexpected = |reason: String| AdminError::Unexpected {
        url: url.to_string(),
        status: answer.status.as_u16(),
        reason,
        body: String::from_utf8_lossy(&answer.body).into_owned(),
    };
    if answer.status.is_success() {
        return serde_json::from_slice(&answer.body).map_err(|e| unexpected(e.to_string()));
    }
    match serde_json::from_slice::<ErrorAnswer>(&answer.body) {
        Ok(ErrorAnswer { error }) => Err(AdminError::Api {
            url: url.to_string(),
            error: ApiError {
                status: answer.status.as_u16(),
                code: error.code,
                message: error.message,
                field: error.field,
            },
        }),
        Err(e) => Err(unexpected(format!("not an API error: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: hyper::HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn an_error_answer_becomes_a_typed_error() {
        let body = r#"{"error":{"code":"bad_request","message":"not JSON","field":"body"}}"#;
        let err = decode::<Faults>("http://n1", &answer(400, body)).unwrap_err();
        let expected = ApiError {
            status: 400,
            code: "bad_request".into(),
            message: "not JSON".into(),
            field: Some("body".into()),
        };
        assert_eq!(err.api(), Some(&expected));
        assert_eq!(err.code(), Some("bad_request"));
        assert_eq!(
            err.to_string(),
            "http://n1 refused: 400 bad_request: not JSON"
        );

        let body = r#"{"error":{"code":"not_leader","message":"send it to node 2"}}"#;
        let err = decode::<LeaderAnswer>("http://n1", &answer(409, body)).unwrap_err();
        let api = err.api().unwrap();
        assert_eq!((api.status, api.code.as_str()), (409, "not_leader"));
        assert_eq!(api.field, None);
    }

    #[test]
    fn answers_that_are_not_the_api_are_unexpected() {
        for (status, body) in [
            (502, "<html>bad gateway</html>"),
            (404, r#"{"error":"flat"}"#),
            (200, r#"{"leader":"two"}"#),
            (200, ""),
        ] {
            match decode::<LeaderAnswer>("http://n1", &answer(status, body)) {
                Err(AdminError::Unexpected {
                    status: s, body: b, ..
                }) => assert_eq!((s, b.as_str()), (status, body)),
                other => panic!("{status} {body:?}: {:?}", other.map(|a| a.leader)),
            }
        }
    }

    #[test]
    fn answers_decode_into_their_types() {
        let leader: LeaderAnswer = decode("u", &answer(200, r#"{"leader":3}"#)).unwrap();
        assert_eq!(leader.leader, 3);
        let sealed = r#"{"node_id":1,"high_water_ms":1700000000000,"status":{}}"#;
        let hw: HighWater = decode("u", &answer(200, sealed)).unwrap();
        assert_eq!(hw.high_water_ms, 1_700_000_000_000);
        let prepared: Prepared =
            decode("u", &answer(200, r#"{"name":"paxos","version":"0.3.0"}"#)).unwrap();
        assert_eq!(
            (prepared.name.as_str(), prepared.version.as_str()),
            ("paxos", "0.3.0")
        );
    }

    #[test]
    fn faults_send_only_what_is_set_and_read_what_a_node_answers() {
        let heal = Faults {
            blocked_peers: Some(vec![]),
            guest: Some(GuestFault::Exhaust),
            ..Faults::default()
        };
        assert_eq!(
            serde_json::to_string(&heal).unwrap(),
            r#"{"blocked_peers":[],"guest":"exhaust"}"#
        );
        assert_eq!(serde_json::to_string(&Faults::default()).unwrap(), "{}");
        // A single node's answer to GET /v1/admin/faults.
        let single = r#"{"blocked_peers":null,"clock_offset_ms":-5,"dropped_from":null,"fail_storage_reads":2,"fail_storage_writes":0,"guest":"hang"}"#;
        let faults: Faults = decode("u", &answer(200, single)).unwrap();
        assert_eq!(
            faults,
            Faults {
                blocked_peers: None,
                dropped_from: None,
                fail_storage_writes: Some(0),
                fail_storage_reads: Some(2),
                clock_offset_ms: Some(-5),
                guest: Some(GuestFault::Hang),
            }
        );
    }

    #[test]
    fn a_bad_url_is_refused_at_once() {
        assert!(matches!(
            Admin::new("ftp://n1:7373", "t"),
            Err(AdminError::Connection(ClientError::BadUrl(_)))
        ));
        assert_eq!(
            Admin::new("https://n1:7373", "t").unwrap().url(),
            "https://n1:7373"
        );
        assert_eq!(
            Admin::new("http://n1:7373/", "t").unwrap().url(),
            "http://n1:7373"
        );
    }
}
