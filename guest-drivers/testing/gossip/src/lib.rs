//! Test-only driver for the host's peer network. It is **not** consensus:
//! the member with the lowest id serves from its own storage, the others
//! report it as leader (so the host redirects to it), and every node pings
//! every other node each 100 ms and answers pings with pongs, logging the
//! first of each it receives.

use std::cell::{Cell, RefCell};
use tsohost_guest_sdk::{
    Config, DriverError, DriverInfo, Epoch, Guest, Leadership, LogLevel, NodeId, Peer, Role,
    export_driver, host, register, rules,
};

const PING_EVERY_MS: u64 = 100;

std::thread_local! {
    static OTHERS: RefCell<Vec<NodeId>> = const { RefCell::new(Vec::new()) };
    static LEADER: Cell<NodeId> = const { Cell::new(0) };
    static SEEN: RefCell<Vec<(NodeId, bool)>> = const { RefCell::new(Vec::new()) };
}

std::thread_local! {
    static SELF: Cell<NodeId> = const { Cell::new(0) };
}

fn leads() -> bool {
    LEADER.get() == SELF.get()
}

struct Gossip;

impl Guest for Gossip {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "gossip".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn init(cfg: Config) -> Result<(), DriverError> {
        rules::check_options(&cfg, &[])?;
        let leader = cfg.peers.iter().map(|p| p.id).min().unwrap_or(cfg.node_id);
        SELF.set(cfg.node_id);
        LEADER.set(leader);
        OTHERS.set(
            cfg.peers
                .iter()
                .map(|p| p.id)
                .filter(|&id| id != cfg.node_id)
                .collect(),
        );
        if leader == cfg.node_id {
            register::open_instance(cfg.node_id, cfg.floor)
        } else {
            host::report_leadership(Leadership {
                role: Role::Follower,
                leader: Some(leader),
                epoch: rules::ZERO_EPOCH,
                lease_until_ms: 0,
            });
            Ok(())
        }
    }

    fn on_message(from: NodeId, payload: Vec<u8>) {
        let ping = payload == b"ping";
        if ping {
            host::send(from, b"pong");
        }
        let first = SEEN.with_borrow_mut(|seen| {
            let new = !seen.contains(&(from, ping));
            if new {
                seen.push((from, ping));
            }
            new
        });
        if first {
            let kind = if ping { "ping" } else { "pong" };
            host::log(
                LogLevel::Info,
                &format!("gossip: first {kind} from node {from}"),
            );
        }
    }

    fn on_tick(now_ms: u64) -> u64 {
        OTHERS.with_borrow(|others| {
            for &peer in others {
                host::send(peer, b"ping");
            }
        });
        now_ms + PING_EVERY_MS
    }

    fn load_high_water(request: u64) {
        if leads() {
            register::load_high_water(request);
        } else {
            tsohost_guest_sdk::complete(request, Err(DriverError::NotLeader(Some(LEADER.get()))));
        }
    }

    fn persist_high_water(request: u64, at_least: u64, epoch: Epoch) {
        if leads() {
            register::persist_high_water(request, at_least, epoch);
        } else {
            tsohost_guest_sdk::complete(request, Err(DriverError::NotLeader(Some(LEADER.get()))));
        }
    }

    fn change_membership(request: u64, _members: Vec<Peer>) {
        register::refuse_cluster_operation(request, "change-membership");
    }

    fn transfer_leadership(request: u64, _to: Option<NodeId>) {
        register::refuse_cluster_operation(request, "transfer-leadership");
    }
}

export_driver!(Gossip);
