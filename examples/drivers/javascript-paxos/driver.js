// `javascript-paxos`: a replicated tsohost driver written in JavaScript.
//
// Leader-based Paxos over one value, the high water, which only grows: a
// max-register. Written from wit/driver.wit and docs/writing-a-driver.md
// alone, with no Rust and no SDK; built with componentize-js
// (StarlingMonkey). README.md states the protocol and the proof of its
// lease; the names below (gate, W, L, A) are the ones it uses.
//
// Durable state (host storage, every write synced):
// - `promised`: the highest ballot this node promised (16 bytes: round,
//   node, u64 big-endian). A ballot is the epoch `{hi: round, lo: node}`.
// - `high-water`: the highest value this node accepted (8 bytes). Values
//   only ever grow, so any two accepted values are ordered by size and an
//   acceptor keeps just the largest.
// - `members`: the voter ids of the first start (the membership is fixed).
//
// Everything else (who leads, the lease, pending requests) lives in guest
// memory and is rebuilt by `init`: a fresh instance starts as a follower.
//
// Bindings (componentize-js): a u64 is a BigInt; list<u8> a Uint8Array;
// variants `{tag, val}`; option<T> the value or undefined; an exported
// function returning result<_, E> throws E for err; an imported one throws
// an error whose `payload` is E.

import {
  completed,
  log,
  nowMs,
  reportLeadership,
  reportMembership,
  send,
  storageGet,
  storageWrite,
} from "tsohost:driver/host@0.1.0";

const NAME = "javascript-paxos"; // storage namespace: 1-64 of [a-z0-9_-]
const VERSION = "0.1.0";

const U64_MAX = (1n << 64n) - 1n;
const MAX_PHYSICAL_MS = (1n << 46n) - 1n;

const OPTIONS = ["election-timeout-ms", "heartbeat-ms"];
const DEFAULT_ELECTION_TIMEOUT_MS = 1000;
const DEFAULT_HEARTBEAT_MS = 100;
// Heartbeats per election timeout: the lease (half of it) must span two.
const HEARTBEATS_PER_TIMEOUT = 4;
// Send times remembered for matching acknowledgements to heartbeats.
const SENT_KEPT = 256;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const KEY_PROMISED = encoder.encode("promised");
const KEY_HIGH_WATER = encoder.encode("high-water");
const KEY_MEMBERS = encoder.encode("members");

// ---------------------------------------------------------------- errors

// Carries a driver-error (`{tag, val}`) out of the helpers below.
class DriverFailure extends Error {
  constructor(error) {
    super(`${error.tag}: ${typeof error.val === "string" ? error.val : ""}`);
    this.error = error;
  }
}

const fail = (tag, val) => new DriverFailure({ tag, val });

// The driver-error behind a failed import call or one of ours, or null.
function driverErrorOf(e) {
  if (e instanceof DriverFailure) return e.error;
  if (e && e.payload !== undefined) return e.payload;
  return null;
}

function describe(e) {
  const error = driverErrorOf(e);
  if (error) return `${error.tag}: ${JSON.stringify(error.val, (_, v) => (typeof v === "bigint" ? v.toString() : v))}`;
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

// ---------------------------------------------------------------- ballots

const ZERO = Object.freeze({ round: 0n, node: 0n });

function cmp(a, b) {
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  if (a.node !== b.node) return a.node < b.node ? -1 : 1;
  return 0;
}

const epochOf = (b) => ({ hi: b.round, lo: b.node });
const ballotOfEpoch = (e) => ({ round: e.hi, node: e.lo });
const show = (b) => `${b.round}.${b.node}`;

// ---------------------------------------------------------------- storage

function u64Bytes(...values) {
  const bytes = new Uint8Array(8 * values.length);
  const view = new DataView(bytes.buffer);
  values.forEach((v, i) => view.setBigUint64(8 * i, v, false));
  return bytes;
}

// The u64s stored under `key` (exactly `count` of them), or null if absent.
function readU64s(key, count) {
  const raw = storageGet(key);
  if (raw === undefined || raw === null) return null;
  if (raw.length !== 8 * count) {
    throw fail(
      "storage",
      `key '${decoder.decode(key)}' holds ${raw.length} bytes, expected ` +
        `${8 * count}: the ${NAME} state is corrupt`,
    );
  }
  const view = new DataView(Uint8Array.from(raw).buffer);
  return Array.from({ length: count }, (_, i) => view.getBigUint64(8 * i, false));
}

// One atomic synced write; throws DriverFailure(storage) if the host's
// storage failed (nothing may be assumed written then).
function writeSynced(puts) {
  try {
    storageWrite(puts, [], true);
  } catch (e) {
    const error = driverErrorOf(e);
    if (error) throw new DriverFailure(error);
    throw e;
  }
}

// ---------------------------------------------------------------- wire
//
// Every message: version (1 byte), kind (1 byte), then u64 big-endian
// fields. A ballot is two fields (round, node).

const WIRE_VERSION = 1;
const PREPARE = 1; // ballot                  candidate -> all
const PROMISE = 2; // ballot, high water      acceptor -> candidate
const NACK = 3; // promised ballot            acceptor -> older proposer
const ACCEPT = 4; // ballot, seq, value       leader -> all (also the heartbeat)
const ACCEPTED = 5; // ballot, seq            acceptor -> leader
const FIELDS = { [PREPARE]: 2, [PROMISE]: 3, [NACK]: 2, [ACCEPT]: 4, [ACCEPTED]: 3 };
const KIND_NAMES = { [PREPARE]: "prepare", [PROMISE]: "promise", [NACK]: "nack", [ACCEPT]: "accept", [ACCEPTED]: "accepted" };

function encode(kind, ballot, ...rest) {
  const fields = [ballot.round, ballot.node, ...rest];
  const bytes = new Uint8Array(2 + 8 * fields.length);
  bytes[0] = WIRE_VERSION;
  bytes[1] = kind;
  const view = new DataView(bytes.buffer);
  fields.forEach((v, i) => view.setBigUint64(2 + 8 * i, v, false));
  return bytes;
}

// `{kind, ballot, fields}` or a string saying why the payload is garbage.
function decode(payload) {
  if (payload.length < 2) return `${payload.length} bytes is shorter than a header`;
  if (payload[0] !== WIRE_VERSION) {
    return `wire version ${payload[0]}, this build speaks ${WIRE_VERSION}: run one version of ${NAME} on every node`;
  }
  const kind = payload[1];
  const count = FIELDS[kind];
  if (count === undefined) return `unknown message kind ${kind}`;
  if (payload.length !== 2 + 8 * count) {
    return `a ${KIND_NAMES[kind]} has ${2 + 8 * count} bytes, this one ${payload.length}`;
  }
  const view = new DataView(Uint8Array.from(payload).buffer);
  const f = Array.from({ length: count }, (_, i) => view.getBigUint64(2 + 8 * i, false));
  return { kind, ballot: { round: f[0], node: f[1] }, fields: f.slice(2) };
}

// ---------------------------------------------------------------- options

function parseOptions(options) {
  const settings = { E: DEFAULT_ELECTION_TIMEOUT_MS, hb: DEFAULT_HEARTBEAT_MS };
  for (const [key, value] of options) {
    if (!OPTIONS.includes(key)) {
      throw fail("invalid-config", `unknown driver option \`${key}\`; this driver knows ${OPTIONS.join(", ")}`);
    }
    if (!/^[0-9]{1,9}$/.test(value)) {
      throw fail("invalid-config", `option \`${key}\`: \`${value}\` is not a whole number of milliseconds below 10^9`);
    }
    if (key === "election-timeout-ms") settings.E = Number(value);
    else settings.hb = Number(value);
  }
  if (settings.hb === 0 || settings.hb * HEARTBEATS_PER_TIMEOUT > settings.E) {
    throw fail(
      "invalid-config",
      `option \`heartbeat-ms\` (${settings.hb}) must be positive and at most 1/${HEARTBEATS_PER_TIMEOUT} ` +
        `of \`election-timeout-ms\` (${settings.E}), or the lease (half the election timeout) ` +
        "lapses between heartbeats",
    );
  }
  if (settings.E > 600000) {
    throw fail("invalid-config", `option \`election-timeout-ms\` (${settings.E}) is above 10 minutes`);
  }
  return settings;
}

// ---------------------------------------------------------------- membership

// The voters, sorted, from `cfg.peers` (this node alone if none), checked
// against the ones stored at the first start.
function membersOf(cfg) {
  const ids = cfg.peers.length === 0 ? [cfg.nodeId] : cfg.peers.map((p) => p.id);
  ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (let i = 1; i < ids.length; i++) {
    if (ids[i] === ids[i - 1]) throw fail("invalid-config", `peers: node ${ids[i]} is listed twice`);
  }
  if (!ids.includes(cfg.nodeId)) {
    throw fail("invalid-config", `peers: this node (${cfg.nodeId}) is not among them (${ids.join(", ")})`);
  }
  const listed = ids.join(",");
  const raw = storageGet(KEY_MEMBERS);
  if (raw === undefined || raw === null) {
    writeSynced([[KEY_MEMBERS, encoder.encode(listed)]]);
  } else if (decoder.decode(Uint8Array.from(raw)) !== listed) {
    throw fail(
      "invalid-config",
      `peers: this node first started with the voters ${decoder.decode(Uint8Array.from(raw))}, now ` +
        `${listed}; ${NAME} cannot change its membership (quorums of the two could miss each ` +
        "other): start it with the original peers, or migrate to a driver that can",
    );
  }
  return ids;
}

// A seeded generator for election timeouts (mulberry32): the seed is the
// only randomness a driver gets.
function rng(seed) {
  let a = Number(BigInt.asUintN(32, seed ^ (seed >> 32n))) || 1;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------- the node

// This instance's node; null until `init`.
let node = null;

class Node {
  constructor(cfg, settings, members) {
    this.me = cfg.nodeId;
    this.members = members;
    this.peers = members.filter((id) => id !== this.me);
    this.quorum = Math.floor(members.length / 2) + 1;
    this.floor = cfg.floor;
    this.E = settings.E;
    this.hb = settings.hb;
    this.W = settings.E; // the gate
    this.L = Math.floor(settings.E / 2); // the lease, L < W
    this.random = rng(cfg.seed);

    const promised = readU64s(KEY_PROMISED, 2);
    this.promised = promised ? { round: promised[0], node: promised[1] } : ZERO;
    this.hw = (readU64s(KEY_HIGH_WATER, 1) ?? [0n])[0];
    this.maxRound = this.promised.round;

    const now = Number(nowMs());
    // A fresh instance may have acknowledged a heartbeat just before the
    // last one was lost (the gate lives in memory, the promise in
    // storage): it refuses other ballots for W. One that never promised
    // anything never acknowledged anything.
    this.gateUntil = cmp(this.promised, ZERO) === 0 ? 0 : now + this.W;
    this.gateBallot = this.promised;
    this.role = "follower";
    this.leader = undefined; // the leader this node knows of
    this.candidate = null; // {ballot, promises: Map<node, hw>, lastSent}
    this.lead = null; // see becomeLeader
    this.lastReport = "";
    // A node that was the last to prepare (it led, or tried to) campaigns
    // at once: only its own higher ballots pass the gates of its followers.
    this.electionAt = this.promised.node === this.me || members.length === 1 ? now : now + this.timeout();
    this.garbage = 0;
  }

  timeout() {
    return this.E + Math.floor(this.random() * this.E);
  }

  // Whether this node must refuse to promise `ballot` at `now`.
  gated(now, ballot) {
    const sameLeader = ballot.node === this.gateBallot.node && cmp(ballot, this.gateBallot) >= 0;
    return now < this.gateUntil && !sameLeader;
  }

  closeGate(until, ballot) {
    this.gateUntil = Math.max(this.gateUntil, until);
    this.gateBallot = ballot;
  }

  effectiveHighWater() {
    return this.hw > this.floor ? this.hw : this.floor;
  }

  report() {
    let r;
    if (this.lead && this.lead.ready) {
      r = { role: "leader", leader: this.me, epoch: epochOf(this.lead.ballot), leaseUntilMs: BigInt(this.leaseUntil()) };
    } else if (this.role === "follower") {
      r = { role: "follower", leader: this.leader, epoch: epochOf(this.promised), leaseUntilMs: 0n };
    } else {
      r = { role: "candidate", leader: undefined, epoch: epochOf(this.promised), leaseUntilMs: 0n };
    }
    const key = `${r.role} ${r.leader} ${r.epoch.hi}.${r.epoch.lo} ${r.leaseUntilMs}`;
    if (key !== this.lastReport) {
      this.lastReport = key;
      reportLeadership(r);
    }
  }

  // Store `promised` and/or `hw` (synced, in one write) before a message
  // that depends on them leaves. Throws DriverFailure(storage).
  store(promised, hw) {
    const puts = [];
    if (cmp(promised, this.promised) !== 0) puts.push([KEY_PROMISED, u64Bytes(promised.round, promised.node)]);
    if (hw !== this.hw) puts.push([KEY_HIGH_WATER, u64Bytes(hw)]);
    if (puts.length === 0) return;
    writeSynced(puts);
    this.promised = promised;
    this.hw = hw;
    if (promised.round > this.maxRound) this.maxRound = promised.round;
  }

  // ------------------------------------------------------------ roles

  stepDown(now, leader) {
    const hadLead = this.lead;
    this.lead = null;
    this.candidate = null;
    this.role = "follower";
    this.leader = leader;
    this.electionAt = now + this.timeout();
    this.report(); // the host stops serving before anything else happens
    if (hadLead) {
      for (const p of hadLead.pending) {
        completed(p.request, { tag: "err", val: { tag: "not-leader", val: leader } });
      }
    }
  }

  campaign(now) {
    const ballot = { round: (this.maxRound > this.promised.round ? this.maxRound : this.promised.round) + 1n, node: this.me };
    if (this.gated(now, ballot)) return; // retried at the next tick
    try {
      this.store(ballot, this.hw);
    } catch (e) {
      log("warn", `${NAME}: cannot store my promise of ballot ${show(ballot)} before campaigning (${describe(e)}); retrying`);
      this.electionAt = now + this.hb;
      return;
    }
    this.role = "candidate";
    this.leader = undefined;
    this.candidate = { ballot, promises: new Map(), lastSent: now };
    this.electionAt = now + this.timeout();
    this.report();
    for (const p of this.peers) send(p, encode(PREPARE, ballot));
    this.maybeWin(now);
  }

  maybeWin(now) {
    const c = this.candidate;
    if (!c || c.promises.size + 1 < this.quorum) return;
    let base = this.effectiveHighWater();
    for (const hw of c.promises.values()) if (hw > base) base = hw;
    this.candidate = null;
    this.role = "leader";
    this.leader = this.me;
    this.lead = {
      ballot: c.ballot,
      seq: 0n,
      proposed: base,
      sent: new Map(), // seq -> {at, value}
      acked: new Map(), // peer -> highest seq acknowledged
      committedSeq: 0n,
      committed: 0n,
      base: null, // A: send time of the newest heartbeat a quorum acknowledged
      ready: false, // the recovered value is committed
      lastBeat: now,
      pending: [], // {request, seq, deadline}
    };
    // Phase 2 for the recovered value: until it is on a quorum, no load
    // may answer it (a later leader might not see it).
    this.beat(now);
  }

  // Send ACCEPT(ballot, seq, proposed) to every peer: the heartbeat, the
  // replication of a persist and the barrier of a load in one message.
  // This node accepts first (synced) and counts itself at the newest seq.
  // Returns the storage error that made this node step down, or null.
  beat(now) {
    const l = this.lead;
    if (l.proposed > this.hw) {
      try {
        this.store(this.promised, l.proposed);
      } catch (e) {
        log("error", `${NAME}: cannot store the high water ${l.proposed} as leader of ${show(l.ballot)}: ${describe(e)}; stepping down`);
        this.stepDown(now, undefined);
        return driverErrorOf(e) ?? { tag: "internal", val: describe(e) };
      }
    }
    l.seq += 1n;
    l.lastBeat = now;
    l.sent.set(l.seq, { at: now, value: l.proposed });
    if (l.sent.size > SENT_KEPT) l.sent.delete(l.sent.keys().next().value);
    for (const p of this.peers) send(p, encode(ACCEPT, l.ballot, l.seq, l.proposed));
    this.advance(now);
    return null;
  }

  // Recompute what a quorum holds: the newest seq acknowledged by a quorum
  // (this node at its newest), its value (committed) and its send time A.
  advance(now) {
    const l = this.lead;
    const seqs = [l.seq, ...this.peers.map((p) => l.acked.get(p) ?? 0n)];
    seqs.sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
    const seq = seqs[this.quorum - 1];
    const sent = l.sent.get(seq);
    if (seq <= l.committedSeq || !sent) return;
    l.committedSeq = seq;
    if (sent.value > l.committed) l.committed = sent.value;
    l.base = sent.at;
    // No promise to another ballot until A + W, this node included.
    this.closeGate(sent.at + this.W, l.ballot);
    l.ready = true;
    const done = l.pending.filter((p) => p.seq <= seq);
    l.pending = l.pending.filter((p) => p.seq > seq);
    this.report();
    for (const p of done) completed(p.request, { tag: "ok", val: l.committed });
  }

  leaseUntil() {
    return this.lead && this.lead.base !== null ? this.lead.base + this.L : 0;
  }

  // ------------------------------------------------------------ messages

  onMessage(from, payload) {
    const now = Number(nowMs());
    const m = decode(payload);
    if (typeof m === "string") return this.ignore(from, m);
    if (!this.members.includes(from)) return this.ignore(from, `node ${from} is not a voter (${this.members.join(", ")})`);
    if (m.ballot.round > this.maxRound) this.maxRound = m.ballot.round;
    switch (m.kind) {
      case PREPARE:
        if (m.ballot.node !== from) return this.ignore(from, `a prepare of ballot ${show(m.ballot)} from node ${from}`);
        return this.onPrepare(now, from, m.ballot);
      case PROMISE:
        return this.onPromise(now, from, m.ballot, m.fields[0]);
      case NACK:
        return this.onNack(now, m.ballot);
      case ACCEPT:
        if (m.ballot.node !== from) return this.ignore(from, `an accept of ballot ${show(m.ballot)} from node ${from}`);
        return this.onAccept(now, from, m.ballot, m.fields[0], m.fields[1]);
      case ACCEPTED:
        return this.onAccepted(now, from, m.ballot, m.fields[0]);
    }
  }

  ignore(from, why) {
    this.garbage += 1;
    // The first few, then every 1000th: a bad peer cannot flood the log.
    if (this.garbage <= 10 || this.garbage % 1000 === 0) {
      log("warn", `${NAME}: ignored a message from node ${from} (${this.garbage} so far): ${why}`);
    }
  }

  // Promise `ballot` (and adopt it) unless gated; true if promised.
  promise(now, ballot) {
    if (cmp(ballot, this.promised) === 0) return true;
    if (this.gated(now, ballot)) return false;
    try {
      this.store(ballot, this.hw);
    } catch (e) {
      log("warn", `${NAME}: cannot store my promise of ballot ${show(ballot)} (${describe(e)}); not answering`);
      return false;
    }
    if (this.role !== "follower") this.stepDown(now, undefined);
    this.electionAt = now + this.timeout();
    return true;
  }

  onPrepare(now, from, ballot) {
    if (cmp(ballot, this.promised) < 0) return send(from, encode(NACK, this.promised));
    const wasNew = cmp(ballot, this.promised) > 0;
    if (!this.promise(now, ballot)) return;
    if (wasNew) {
      this.leader = undefined;
      this.report();
    }
    send(from, encode(PROMISE, ballot, this.effectiveHighWater()));
  }

  onPromise(now, from, ballot, hw) {
    const c = this.candidate;
    if (!c || cmp(ballot, c.ballot) !== 0) return;
    c.promises.set(from, hw);
    this.maybeWin(now);
  }

  onNack(now, promised) {
    const mine = this.lead ? this.lead.ballot : this.candidate ? this.candidate.ballot : null;
    if (mine && cmp(promised, mine) > 0) this.stepDown(now, undefined);
  }

  onAccept(now, from, ballot, seq, value) {
    if (cmp(ballot, this.promised) < 0) return send(from, encode(NACK, this.promised));
    if (!this.promise(now, ballot)) return;
    if (value > this.hw) {
      try {
        this.store(this.promised, value);
      } catch (e) {
        log("warn", `${NAME}: cannot store the high water ${value} of ballot ${show(ballot)} (${describe(e)}); not acknowledging`);
        return;
      }
    }
    // Acknowledging: no promise to another ballot for W from now.
    this.closeGate(now + this.W, ballot);
    this.electionAt = now + this.timeout();
    this.leader = from;
    this.report();
    send(from, encode(ACCEPTED, ballot, seq));
  }

  onAccepted(now, from, ballot, seq) {
    const l = this.lead;
    if (!l || cmp(ballot, l.ballot) !== 0 || seq > l.seq) return;
    if ((l.acked.get(from) ?? 0n) >= seq) return;
    l.acked.set(from, seq);
    this.advance(now);
  }

  // ------------------------------------------------------------ time

  onTick(now) {
    const l = this.lead;
    if (l) {
      if (now - l.lastBeat >= this.hb && this.beat(now) !== null) return now + this.hb;
      const expired = l.pending.filter((p) => now >= p.deadline);
      if (expired.length > 0) {
        l.pending = l.pending.filter((p) => now < p.deadline);
        for (const p of expired) {
          completed(p.request, {
            tag: "err",
            val: { tag: "not-leader", val: undefined },
          });
        }
        log("warn", `${NAME}: ${expired.length} request(s) not acknowledged by a quorum within ${3 * this.E} ms; is a majority of ${this.members.join(", ")} reachable?`);
      }
      return (this.lead ? this.lead.lastBeat : now) + this.hb;
    }
    if (now >= this.electionAt) this.campaign(now);
    const c = this.candidate;
    if (c && now - c.lastSent >= this.hb) {
      c.lastSent = now; // prepares and promises may be lost
      for (const p of this.peers) send(p, encode(PREPARE, c.ballot));
    }
    if (this.lead) return this.lead.lastBeat + this.hb;
    let next = this.candidate ? Math.min(this.candidate.lastSent + this.hb, this.electionAt) : this.electionAt;
    if (next <= now) next = Math.max(this.gateUntil, now + 1); // waiting for the gate
    return next;
  }

  // ------------------------------------------------------------ requests

  // The leadership a request may run under, or the error to fail it with.
  checkLeading(epoch) {
    if (epoch && cmp(ballotOfEpoch(epoch), this.promised) < 0) throw fail("fenced", epochOf(this.promised));
    const l = this.lead;
    if (!l || !l.ready) throw fail("not-leader", this.leader === this.me ? undefined : this.leader);
    if (epoch && cmp(ballotOfEpoch(epoch), l.ballot) > 0) {
      throw fail(
        "internal",
        `the request carries epoch ${epoch.hi}.${epoch.lo}, newer than this node's leadership ` +
          `${show(l.ballot)}: the host can only have it from an earlier instance's report, which cannot be newer`,
      );
    }
    return l;
  }

  // Wait for a quorum to acknowledge an ACCEPT sent from now on.
  replicate(now, request, l) {
    const error = this.beat(now);
    if (error !== null) {
      completed(request, { tag: "err", val: error });
      return;
    }
    if (l.committedSeq >= l.seq) {
      completed(request, { tag: "ok", val: l.committed });
    } else {
      l.pending.push({ request, seq: l.seq, deadline: now + 3 * this.E });
    }
  }

  load(request) {
    const now = Number(nowMs());
    const l = this.checkLeading(null);
    // A barrier: a quorum acknowledging this ballot after the call means no
    // newer ballot was promised by a quorum before it (README).
    this.replicate(now, request, l);
  }

  persist(request, atLeast, epoch) {
    const now = Number(nowMs());
    if (atLeast > MAX_PHYSICAL_MS) throw fail("out-of-range", atLeast);
    const l = this.checkLeading(epoch);
    if (atLeast <= l.committed) {
      completed(request, { tag: "ok", val: l.committed });
      return;
    }
    if (atLeast > l.proposed) l.proposed = atLeast;
    this.replicate(now, request, l);
  }
}

// Run `fn` for `request`; complete it with the error if `fn` throws.
function request(request, fn) {
  try {
    if (node === null) throw fail("internal", "called before init");
    fn();
  } catch (e) {
    const error = driverErrorOf(e) ?? { tag: "internal", val: describe(e) };
    completed(request, { tag: "err", val: error });
  }
}

function refuse(request, operation) {
  completed(request, {
    tag: "err",
    val: {
      tag: "invalid-config",
      val:
        `${operation}: ${NAME} has a fixed membership and no leadership transfer; ` +
        "use the built-in raft or paxos driver for that",
    },
  });
}

export const driver = {
  info() {
    return { name: NAME, version: VERSION };
  },

  init(cfg) {
    try {
      const settings = parseOptions(cfg.options);
      const members = membersOf(cfg);
      node = new Node(cfg, settings, members);
    } catch (e) {
      const error = driverErrorOf(e);
      if (error) throw error;
      throw e;
    }
    if (cfg.peers.length > 0) reportMembership(cfg.peers);
    node.report();
    node.onTick(Number(nowMs()));
  },

  onMessage(from, payload) {
    if (node !== null) node.onMessage(from, payload);
  },

  onTick(nowMs) {
    if (node === null) return nowMs + 1000n;
    return BigInt(node.onTick(Number(nowMs)));
  },

  loadHighWater(id) {
    request(id, () => node.load(id));
  },

  persistHighWater(id, atLeast, epoch) {
    request(id, () => node.persist(id, atLeast, epoch));
  },

  changeMembership(id, members) {
    refuse(id, "change-membership");
  },

  transferLeadership(id, to) {
    refuse(id, "transfer-leadership");
  },
};
