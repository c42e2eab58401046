//! Test-only driver for the host's peer network. It is **not** consensus:
//! the member with the lowest id serves from its own storage, the others
//! report it as leader (so the host redirects to it), and every node pings
//! every other node each 100 ms and answers pings with pongs, logging the
//! first of each it receives.

use std::rc::Rc;

use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::register::{self, SingleNode};
use tsohost_guest_sdk::{
    Config, Driver, DriverError, Epoch, Leadership, LogLevel, NodeId, Peer, Role, rules,
};

const PING_EVERY_MS: u64 = 100;

struct Gossip {
    host: Rc<dyn Host>,
    leader: NodeId,
    others: Vec<NodeId>,
    /// `(from, ping?)` of every kind of message logged once.
    seen: Vec<(NodeId, bool)>,
    /// The register, on the leader only.
    register: Option<SingleNode>,
}

impl Gossip {
    fn not_leader(&self, request: u64) {
        self.host
            .completed(request, Err(DriverError::NotLeader(Some(self.leader))));
    }
}

impl Driver for Gossip {
    const NAME: &'static str = "gossip";

    fn init(host: Rc<dyn Host>, cfg: &Config) -> Result<Self, DriverError> {
        rules::check_options(cfg, &[])?;
        let leader = cfg.peers.iter().map(|p| p.id).min().unwrap_or(cfg.node_id);
        let others = cfg
            .peers
            .iter()
            .map(|p| p.id)
            .filter(|&id| id != cfg.node_id)
            .collect();
        let register = if leader == cfg.node_id {
            Some(SingleNode::open(host.clone(), cfg.node_id, cfg.floor)?)
        } else {
            host.report_leadership(Leadership {
                role: Role::Follower,
                leader: Some(leader),
                epoch: rules::ZERO_EPOCH,
                lease_until_ms: 0,
            });
            None
        };
        Ok(Gossip {
            host,
            leader,
            others,
            seen: Vec::new(),
            register,
        })
    }

    fn on_message(&mut self, from: NodeId, payload: &[u8]) {
        let ping = payload == b"ping";
        if ping {
            self.host.send(from, b"pong");
        }
        if !self.seen.contains(&(from, ping)) {
            self.seen.push((from, ping));
            let kind = if ping { "ping" } else { "pong" };
            self.host.log(
                LogLevel::Info,
                &format!("gossip: first {kind} from node {from}"),
            );
        }
    }

    fn on_tick(&mut self, now_ms: u64) -> u64 {
        for &peer in &self.others {
            self.host.send(peer, b"ping");
        }
        now_ms + PING_EVERY_MS
    }

    fn load_high_water(&mut self, request: u64) {
        match self.register.as_mut() {
            Some(r) => r.load_high_water(request),
            None => self.not_leader(request),
        }
    }

    fn persist_high_water(&mut self, request: u64, at_least: u64, epoch: Epoch) {
        match self.register.as_mut() {
            Some(r) => r.persist_high_water(request, at_least, epoch),
            None => self.not_leader(request),
        }
    }

    fn change_membership(&mut self, request: u64, _members: &[Peer]) {
        register::refuse_cluster_operation(&*self.host, request, "change-membership");
    }

    fn transfer_leadership(&mut self, request: u64, _to: Option<NodeId>) {
        register::refuse_cluster_operation(&*self.host, request, "transfer-leadership");
    }
}

tsohost_guest_sdk::export_driver!(Gossip);
