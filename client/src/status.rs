//! The typed form of `GET /v1/status`: what one node says about itself.
//!
//! The server builds these types and serializes them; clients, the command
//! line and tools parse them back, so the JSON has one definition instead of
//! string-keyed reads scattered over the code.
//!
//! # Wire compatibility
//!
//! The JSON is the one the server produced before these types existed, byte
//! for byte. It was built as a `serde_json::Value`, whose objects sort their
//! keys, so **every struct here declares its fields in alphabetical order**:
//! a field added later must go where its name sorts, or the output changes
//! (the test `serialization_sorts_keys_like_a_value` checks this).
//!
//! Parsing ignores fields it does not know, so a client can read the status
//! of a newer server that added some.

use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

/// One node's answer to `GET /v1/status`. It is that node's view only: in a
/// cluster, ask the node you care about (followers know who leads, but their
/// high water and window are their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// The peers this node drops all traffic with (fault injection through
    /// `PUT /v1/admin/faults`); `None` (JSON `null`) on a single node, which
    /// has no peer network.
    pub blocked_peers: Option<Vec<u64>>,
    /// The driver running on this node.
    pub driver: DriverStatus,
    /// The highest timestamp's physical part (Unix ms) this node may serve
    /// up to, as made durable by the driver; 0 while it does not lead.
    pub high_water_ms: u64,
    /// The last timestamp this node handed out (0 if none). A decimal string
    /// in JSON: numbers lose precision above 2^53.
    #[serde(with = "decimal")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9]+$"))]
    pub last_issued: Timestamp,
    /// The node's view of leadership.
    pub leadership: LeadershipStatus,
    /// The voting members of the cluster, in id order; `None` (JSON `null`)
    /// on a single node.
    pub members: Option<Vec<Member>>,
    /// Which driver this node's data belongs to, and whether it is sealed
    /// for a migration (`tsohost cluster migrate`).
    pub migration: MigrationStatus,
    /// This node's id (`--node-id`).
    pub node_id: u64,
    /// True while the node hands out timestamps: it leads, its driver has
    /// started, and it is within the driver's lease. `GET /readyz` is 200
    /// exactly then.
    pub serving: bool,
    /// How far ahead of the clock (ms) the leader makes the high water
    /// durable (`--window`).
    pub window_ms: u64,
}

impl Status {
    /// The member that leads, if this node knows one and it is a member.
    pub fn leader(&self) -> Option<&Member> {
        let leader = self.leadership.leader?;
        self.members.as_ref()?.iter().find(|m| m.id == leader)
    }
}

/// What operators see of the driver (also the answer of a driver swap or
/// migration, under `"driver"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DriverStatus {
    /// Crashes (traps, exhausted limits) since the node started; each is
    /// followed by a restart of the driver.
    pub crashes: u64,
    /// The SHA-256 of the component, hex: tells two builds apart.
    pub digest: String,
    /// False from a crash until the next instance has started (and before
    /// the first one has).
    pub healthy: bool,
    /// Why the driver last crashed, if it ever did.
    pub last_crash: Option<String>,
    /// Unix ms when the component was loaded.
    pub loaded_at_ms: u64,
    /// The driver's name, as its `info` reports it (`raft`, `paxos`, ...).
    pub name: String,
    /// Where the component came from, for people to read (`built-in driver
    /// "raft"`, a file path, ...).
    pub source: String,
    /// Hot swaps and migrations since the node started.
    pub swaps: u64,
    /// The driver's version, as its `info` reports it.
    pub version: String,
    /// The version of the WIT interface the component was built against.
    pub wit_version: String,
}

/// The node's view of leadership: the driver's latest report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeadershipStatus {
    /// The driver's epoch, `hi.lo`, as it reported it; `None` before its
    /// first report. Epochs only grow; a new one means a new term.
    pub epoch: Option<String>,
    /// The node the driver believes leads, if any (possibly this one).
    pub leader: Option<u64>,
    /// This node's role.
    pub role: Role,
}

/// A node's role in the driver's consensus. Only a leader may serve, and
/// only once [`Status::serving`] says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Leads (`"leader"`).
    Leader,
    /// Follows a leader, or knows none and waits (`"follower"`); also the
    /// state of a node whose driver has not reported yet.
    Follower,
    /// Stands for election (`"candidate"`).
    Candidate,
}

impl Role {
    /// The JSON name: `leader`, `follower` or `candidate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A voting member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    /// Its peer address, `HOST:PORT` (`--peers`).
    pub address: String,
    /// Its node id.
    pub id: u64,
    /// Its public URL as it advertised it; `None` for the answering node
    /// itself and for a peer it has not heard from.
    pub url: Option<String>,
}

/// Which driver a node's data belongs to (the host's record `h/driver`),
/// under `"migration"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrationStatus {
    /// The driver's name the data belongs to.
    pub driver: String,
    /// Every timestamp this node's driver serves lies above this (Unix ms);
    /// a migration raises it above the old driver's high water.
    pub floor: u64,
    /// The storage namespace's generation: 0 at first, +1 per migration.
    pub generation: u64,
    /// Sealed for a migration: not serving, and never to serve again under
    /// this driver (until unsealed by an aborted migration).
    pub sealed: bool,
}

/// A [`Timestamp`] as a decimal string, as every 64-bit value of the API.
mod decimal {
    use crate::timestamp::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(ts)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(Timestamp).map_err(|_| {
            serde::de::Error::custom(format!("expected a 64-bit decimal string, got {text:?}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster node's answer, as the server wrote it before the types.
    const CLUSTER: &str = concat!(
        r#"{"blocked_peers":[3],"driver":{"crashes":1,"digest":"9f2c","healthy":true,"#,
        r#""last_crash":"trap: unreachable","loaded_at_ms":1700000000000,"name":"raft","#,
        r#""source":"built-in driver \"raft\"","swaps":2,"version":"0.3.0","wit_version":"0.2.0"},"#,
        r#""high_water_ms":1700000003000,"last_issued":"18446744073709551615","#,
        r#""leadership":{"epoch":"7.1","leader":2,"role":"leader"},"members":["#,
        r#"{"address":"127.0.0.1:7501","id":1,"url":"http://127.0.0.1:7401"},"#,
        r#"{"address":"127.0.0.1:7502","id":2,"url":null}],"#,
        r#""migration":{"driver":"raft","floor":0,"generation":0,"sealed":false},"#,
        r#""node_id":2,"serving":true,"window_ms":3000}"#
    );

    /// A single node's, before its driver's first report.
    const SINGLE: &str = concat!(
        r#"{"blocked_peers":null,"driver":{"crashes":0,"digest":"ab","healthy":false,"#,
        r#""last_crash":null,"loaded_at_ms":0,"name":"file","source":"builtin:file","#,
        r#""swaps":0,"version":"0.1.0","wit_version":"0.2.0"},"high_water_ms":0,"#,
        r#""last_issued":"0","leadership":{"epoch":null,"leader":null,"role":"follower"},"#,
        r#""members":null,"migration":{"driver":"file","floor":12,"generation":1,"#,
        r#""sealed":true},"node_id":1,"serving":false,"window_ms":3000}"#
    );

    #[test]
    fn the_servers_json_round_trips_byte_for_byte() {
        for sample in [CLUSTER, SINGLE] {
            let status: Status = serde_json::from_str(sample).unwrap();
            assert_eq!(serde_json::to_string(&status).unwrap(), sample);
        }
        let cluster: Status = serde_json::from_str(CLUSTER).unwrap();
        assert_eq!(cluster.last_issued, Timestamp(u64::MAX));
        assert_eq!(cluster.leadership.role, Role::Leader);
        assert_eq!(cluster.leader().map(|m| m.id), Some(2));
        assert_eq!(cluster.blocked_peers, Some(vec![3]));
        let single: Status = serde_json::from_str(SINGLE).unwrap();
        assert_eq!((single.members, single.blocked_peers), (None, None));
        assert!(single.migration.sealed);
    }

    #[test]
    fn serialization_sorts_keys_like_a_value() {
        // The old server serialized a `serde_json::Value` (sorted keys); the
        // typed one must match it, at every level.
        for sample in [CLUSTER, SINGLE] {
            let status: Status = serde_json::from_str(sample).unwrap();
            let value = serde_json::to_value(&status).unwrap();
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                serde_json::to_string(&value).unwrap()
            );
        }
    }

    #[test]
    fn roles_and_timestamps_are_checked() {
        for role in [Role::Leader, Role::Follower, Role::Candidate] {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
        assert!(serde_json::from_str::<Role>("\"boss\"").is_err());
        let bad = CLUSTER.replace("\"18446744073709551615\"", "18446744073709551615");
        assert!(serde_json::from_str::<Status>(&bad).is_err());
        let bad = CLUSTER.replace("\"18446744073709551615\"", "\"1e3\"");
        assert!(serde_json::from_str::<Status>(&bad).is_err());
    }

    #[test]
    fn unknown_fields_of_a_newer_server_are_ignored() {
        let newer = CLUSTER.replacen('{', r#"{"added_later":{"x":1},"#, 1);
        let status: Status = serde_json::from_str(&newer).unwrap();
        assert_eq!(serde_json::to_string(&status).unwrap(), CLUSTER);
    }
}
