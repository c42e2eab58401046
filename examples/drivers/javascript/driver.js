// `javascript-file`: a single-node tsohost driver written in JavaScript.
//
// The same logic as tsohost's built-in `file` driver, built with
// componentize-js (StarlingMonkey) against `wit/driver.wit` (world
// `consensus-driver`). Replace what follows with your own driver: the
// contract is in the comments of wit/driver.wit, and `tsohost check-driver`
// tells you which rule a change breaks.
//
// All durable state lives in host storage, as 8-byte big-endian u64 values:
// - `high-water`: the durable high water; never decreases;
// - `generation`: bumped (synced) by every `init`, so every instance leads
//   under an epoch `{hi: generation, lo: 0}` strictly greater than the last.
//
// The only state kept in guest memory is this instance's config, epoch and
// statistics, re-derived (or restarted from 0) by `init` on every fresh
// instance.
//
// Bindings (componentize-js): every u64 is a BigInt; list<u8> is a
// Uint8Array; variants are `{tag, val}`; enums are strings; option<T> is the
// value or undefined; an exported `result<_, E>` function returns normally
// for ok and throws E for err; an imported one throws an error whose
// `payload` is E.

import {
  completed,
  log,
  reportLeadership,
  storageGet,
  storageWrite,
} from "tsohost:driver/host@0.2.0";

const NAME = "javascript-file"; // storage namespace: 1-64 of [a-z0-9_-]
const VERSION = "0.1.0";

const encoder = new TextEncoder();
const HIGH_WATER = encoder.encode("high-water");
const GENERATION = encoder.encode("generation");

const U64_MAX = (1n << 64n) - 1n;
const MAX_PHYSICAL_MS = (1n << 46n) - 1n; // largest physical ms a timestamp carries

// Per-instance state, set by `init`. A fresh instance starts with null.
let nodeId = null;
let epoch = null;
let floor = 0n;
let highWaterWrites = 0n; // a counter: reset with the instance

// Carries a driver-error (`{tag, val}`) out of the helpers below.
class DriverFailure extends Error {
  constructor(error) {
    super(error.tag);
    this.error = error;
  }
}

const err = (tag, val) => new DriverFailure({ tag, val });

function getU64(key) {
  const raw = storageGet(key);
  if (raw === undefined || raw === null) return null;
  if (raw.length !== 8) {
    throw err(
      "storage",
      `key '${new TextDecoder().decode(key)}' holds ${raw.length} bytes, ` +
        "expected an 8-byte u64: storage is corrupt",
    );
  }
  const bytes = Uint8Array.from(raw);
  return new DataView(bytes.buffer).getBigUint64(0, false);
}

function putU64Synced(key, value) {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, false);
  try {
    storageWrite([[key, bytes]], [], true);
  } catch (e) {
    // storage-write's result<_, driver-error>: the error carries it as payload
    if (e && e.payload !== undefined) throw new DriverFailure(e.payload);
    throw e;
  }
}

// Epochs are ordered by (hi, lo) lexicographically.
function compareEpochs(a, b) {
  if (a.hi !== b.hi) return a.hi < b.hi ? -1 : 1;
  if (a.lo !== b.lo) return a.lo < b.lo ? -1 : 1;
  return 0;
}

function load() {
  const stored = getU64(HIGH_WATER) ?? 0n;
  return stored > floor ? stored : floor;
}

function persist(atLeast, requested) {
  if (atLeast > MAX_PHYSICAL_MS) throw err("out-of-range", atLeast);
  const order = compareEpochs(requested, epoch);
  if (order < 0) throw err("fenced", { hi: epoch.hi, lo: epoch.lo });
  if (order > 0) {
    throw err(
      "internal",
      `persist carries epoch ${requested.hi}.${requested.lo}, newer than this ` +
        `driver's ${epoch.hi}.${epoch.lo}: only this node issues epochs ` +
        "for its storage",
    );
  }
  const current = load();
  if (atLeast <= current) return current;
  putU64Synced(HIGH_WATER, atLeast);
  highWaterWrites += 1n;
  return atLeast;
}

// Run `fn` and complete `request` exactly once with its outcome.
function complete(request, fn) {
  let outcome;
  try {
    if (epoch === null) throw err("internal", "called before init");
    outcome = { tag: "ok", val: fn() };
  } catch (e) {
    if (e instanceof DriverFailure) {
      outcome = { tag: "err", val: e.error };
    } else {
      // never leave a request incomplete
      const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      outcome = { tag: "err", val: { tag: "internal", val: what } };
    }
  }
  completed(request, outcome);
}

function refuseClusterOperation(request, operation) {
  completed(request, {
    tag: "err",
    val: {
      tag: "invalid-config",
      val:
        `${operation}: this is a single-node driver; use a replicated ` +
        "driver (raft)",
    },
  });
}

export const driver = {
  info() {
    return { name: NAME, version: VERSION };
  },

  // result<_, driver-error>: return for ok, throw the driver-error for err.
  init(cfg) {
    if (cfg.options.length > 0) {
      const [key] = cfg.options[0];
      throw {
        tag: "invalid-config",
        val: `unknown driver option \`${key}\`; this driver knows none`,
      };
    }
    for (const p of cfg.peers) {
      if (p.id !== cfg.nodeId) {
        throw {
          tag: "invalid-config",
          val:
            `peers: this is a single-node driver, but node ${p.id} ` +
            `(${p.address}) is configured; use a replicated driver ` +
            "(raft, paxos) for a cluster",
        };
      }
    }
    let generation;
    try {
      generation = (getU64(GENERATION) ?? 0n) + 1n;
      if (generation > U64_MAX) throw err("internal", "generation overflow");
      putU64Synced(GENERATION, generation); // durable before leading
    } catch (e) {
      if (e instanceof DriverFailure) throw e.error;
      throw e;
    }
    nodeId = cfg.nodeId;
    floor = cfg.floor;
    epoch = { hi: generation, lo: 0n };
    reportLeadership({
      role: "leader",
      leader: cfg.nodeId,
      epoch: { hi: generation, lo: 0n },
      leaseUntilMs: U64_MAX,
    });
  },

  onMessage(from, payload) {
    log(
      "warn",
      `ignored ${payload.length} bytes from node ${from}: the ` +
        "javascript-file driver has no peers",
    );
  },

  onTick(nowMs) {
    return U64_MAX;
  },

  loadHighWater(request) {
    complete(request, load);
  },

  persistHighWater(request, atLeast, requested) {
    complete(request, () => persist(atLeast, requested));
  },

  changeMembership(request, members) {
    refuseClusterOperation(request, "change-membership");
  },

  transferLeadership(request, to) {
    refuseClusterOperation(request, "transfer-leadership");
  },

  // Published on the node's /metrics as tsohost_driver_<name>{driver=...}
  // (a counter with `_total` appended). An empty list is a valid answer.
  stats() {
    return [
      {
        name: "high_water_writes",
        help: "synced writes of the high water by this instance",
        value: { tag: "counter", val: highWaterWrites },
        labels: [],
      },
    ];
  },
};
