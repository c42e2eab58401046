//! `zig-file`: a single-node tsohost driver written in Zig.
//!
//! The same logic as the built-in Rust `file` driver
//! (guest-drivers/sdk/src/register.rs) and the Python example, built against
//! `wit/driver.wit` (world `consensus-driver`) without a bindings generator:
//! the canonical-ABI glue is written by hand in the second half of this file.
//!
//! All durable state lives in host storage, as 8-byte big-endian u64 values:
//! - `high-water`: the durable high water; never decreases;
//! - `generation`: bumped (synced) by every `init`, so every instance leads
//!   under an epoch `{hi: generation, lo: 0}` strictly greater than the last.
//!
//! Guest memory holds only what a fresh instance can re-derive or may start
//! again from zero: this instance's epoch and floor (set by `init`) and its
//! statistics.

const std = @import("std");

const name = "zig-file"; // storage namespace: 1-64 of [a-z0-9_-]
const version = "0.1.0";

const high_water_key = "high-water";
const generation_key = "generation";

const u64_max = std.math.maxInt(u64);
const max_physical_ms: u64 = (1 << 46) - 1; // largest physical ms a timestamp carries

/// Per-instance state, set by `init`. A fresh instance starts with null.
var instance: ?struct { epoch: Epoch, floor: u64 } = null;

/// Synced high-water writes by this instance, reported by `stats`. A counter
/// may start again from 0 in a fresh instance, so it needs no storage.
var high_water_writes: u64 = 0;

/// The error the failing call reports: Zig errors carry no payload, so
/// `fail` parks it here and returns `error.Driver` for `try` to propagate.
var failure: DriverError = undefined;

fn fail(e: DriverError) error{Driver} {
    failure = e;
    return error.Driver;
}

fn getU64(key: []const u8) error{Driver}!?u64 {
    const raw = storageGet(key) orelse return null;
    if (raw.len != 8) return fail(.message(.storage, format(
        "key '{s}' holds {d} bytes, expected an 8-byte u64: storage is corrupt",
        .{ key, raw.len },
    )));
    return std.mem.readInt(u64, raw[0..8], .big);
}

fn putU64Synced(key: []const u8, value: u64) error{Driver}!void {
    var bytes: [8]u8 = undefined;
    std.mem.writeInt(u64, &bytes, value, .big);
    try storageWrite(&.{.{ .key = .of(key), .value = .of(&bytes) }}, true);
}

fn init(
    node_id: u64,
    peers: []const Peer,
    floor: u64,
    options: []const KeyValue,
) error{Driver}!void {
    if (options.len > 0) return fail(.message(.invalid_config, format(
        "unknown driver option `{s}`; this driver knows none",
        .{options[0].key.slice()},
    )));
    for (peers) |p| if (p.id != node_id) return fail(.message(.invalid_config, format(
        "peers: this is a single-node driver, but node {d} ({s}) is configured; " ++
            "use a replicated driver (raft, paxos) for a cluster",
        .{ p.id, p.address.slice() },
    )));
    const stored = try getU64(generation_key) orelse 0;
    const generation = std.math.add(u64, stored, 1) catch
        return fail(.message(.internal, "generation overflow"));
    try putU64Synced(generation_key, generation); // durable before leading
    const epoch: Epoch = .{ .hi = generation, .lo = 0 };
    instance = .{ .epoch = epoch, .floor = floor };
    reportLeadership(node_id, epoch, u64_max);
}

fn load() error{Driver}!u64 {
    const self = instance orelse return fail(.message(.internal, "called before init"));
    return @max(try getU64(high_water_key) orelse 0, self.floor);
}

fn persist(at_least: u64, epoch: Epoch) error{Driver}!u64 {
    const self = instance orelse return fail(.message(.internal, "called before init"));
    if (at_least > max_physical_ms)
        return fail(.{ .case = .out_of_range, .payload = .{ .value = at_least } });
    switch (epoch.order(self.epoch)) {
        .lt => return fail(.{ .case = .fenced, .payload = .{ .epoch = self.epoch } }),
        .gt => return fail(.message(.internal, format(
            "persist carries epoch {d}.{d}, newer than this driver's {d}.{d}: " ++
                "only this node issues epochs for its storage",
            .{ epoch.hi, epoch.lo, self.epoch.hi, self.epoch.lo },
        ))),
        .eq => {},
    }
    const current = try load();
    if (at_least <= current) return current;
    try putU64Synced(high_water_key, at_least);
    high_water_writes += 1;
    return at_least;
}

/// The answer to `stats`, from memory only (the host asks between events).
/// Up to 256 entries; to report more, lengthen the array.
fn stats() [1]Metric {
    return .{
        .counter("high_water_writes", "synced writes of the high water by this instance", high_water_writes),
    };
}

fn refuseClusterOperation(request: u64, comptime operation: []const u8) void {
    complete(request, fail(.message(.invalid_config, operation ++
        ": this is a single-node driver; use a replicated driver (raft)")));
}

// ---------------------------------------------------------------------------
// Exports: interface `tsohost:driver/driver@0.2.0`.
//
// Every export that receives lists from the host, reads storage or formats a
// message empties the heap once the host is done with the call (see `heap`).

const driver_interface = "tsohost:driver/driver@0.2.0";

comptime {
    @export(&exportInfo, .{ .name = driver_interface ++ "#info" });
    @export(&exportInit, .{ .name = driver_interface ++ "#init" });
    @export(&postInit, .{ .name = "cabi_post_" ++ driver_interface ++ "#init" });
    @export(&onMessage, .{ .name = driver_interface ++ "#on-message" });
    @export(&onTick, .{ .name = driver_interface ++ "#on-tick" });
    @export(&loadHighWater, .{ .name = driver_interface ++ "#load-high-water" });
    @export(&persistHighWater, .{ .name = driver_interface ++ "#persist-high-water" });
    @export(&changeMembership, .{ .name = driver_interface ++ "#change-membership" });
    @export(&transferLeadership, .{ .name = driver_interface ++ "#transfer-leadership" });
    @export(&exportStats, .{ .name = driver_interface ++ "#stats" });
}

const info_area: DriverInfo = .{ .name = .of(name), .version = .of(version) };

/// `info: func() -> driver-info`: 4 flat results, so a pointer to them.
/// Static data: nothing to free, no post-return.
fn exportInfo() callconv(.c) *const DriverInfo {
    return &info_area;
}

var init_area: UnitResult = undefined;

/// `init: func(cfg: config) -> result<_, driver-error>`: the config record
/// flattens to 8 parameters; the result (4 flat values) goes through memory.
fn exportInit(
    node_id: u64,
    peers: [*]const Peer,
    peers_len: usize,
    _: bool, // bootstrap: a single node needs no bootstrap step
    floor: u64,
    _: u64, // seed: nothing here is random
    options: [*]const KeyValue,
    options_len: usize,
) callconv(.c) *const UnitResult {
    init_area = if (init(node_id, peers[0..peers_len], floor, options[0..options_len]))
        .{ .is_err = false, .err = undefined }
    else |_|
        .{ .is_err = true, .err = failure };
    return &init_area;
}

/// An error's message may live in the heap (formatted here, or passed in by
/// `storage-write`): keep it until the host has read the result.
fn postInit(_: *const UnitResult) callconv(.c) void {
    heap.reset();
}

fn onMessage(from: u64, _: [*]const u8, payload_len: usize) callconv(.c) void {
    defer heap.reset();
    log(.warn, format(
        "ignored {d} bytes from node {d}: the " ++ name ++ " driver has no peers",
        .{ payload_len, from },
    ));
}

fn onTick(_: u64) callconv(.c) u64 {
    return u64_max;
}

fn loadHighWater(request: u64) callconv(.c) void {
    defer heap.reset();
    complete(request, load());
}

fn persistHighWater(request: u64, at_least: u64, epoch_hi: u64, epoch_lo: u64) callconv(.c) void {
    defer heap.reset();
    complete(request, persist(at_least, .{ .hi = epoch_hi, .lo = epoch_lo }));
}

fn changeMembership(request: u64, _: [*]const Peer, _: usize) callconv(.c) void {
    defer heap.reset();
    refuseClusterOperation(request, "change-membership");
}

/// `to: option<node-id>` flattens to a discriminant and a value.
fn transferLeadership(request: u64, _: bool, _: u64) callconv(.c) void {
    refuseClusterOperation(request, "transfer-leadership");
}

var stats_list: @TypeOf(stats()) = undefined;
var stats_area: List(Metric) = undefined;

/// `stats: func() -> list<metric>`: 2 flat results (pointer, length), so a
/// pointer to them. The list lives in static memory and its strings are
/// literals, all overwritten only by the next call: nothing to free, so no
/// post-return.
fn exportStats() callconv(.c) *const List(Metric) {
    stats_list = stats();
    stats_area = .of(&stats_list);
    return &stats_area;
}

// ---------------------------------------------------------------------------
// Imports: interface `tsohost:driver/host@0.2.0`, and thin wrappers.
//
// Declared in full so that the binding of the world stays whole; the compiler
// imports only the functions that are called.

const host = struct {
    extern "tsohost:driver/host@0.2.0" fn send(to: u64, payload: [*]const u8, payload_len: usize) void;
    /// `-> option<list<u8>>`: 3 flat results, written to `ret`.
    extern "tsohost:driver/host@0.2.0" fn @"storage-get"(key: [*]const u8, key_len: usize, ret: *OptionBytes) void;
    /// `-> result<_, driver-error>`: 4 flat results, written to `ret`.
    extern "tsohost:driver/host@0.2.0" fn @"storage-write"(
        puts: [*]const KeyValue,
        puts_len: usize,
        deletes: ?[*]const Bytes,
        deletes_len: usize,
        sync: bool,
        ret: *UnitResult,
    ) void;
    /// `-> list<tuple<list<u8>, list<u8>>>`: 2 flat results, written to `ret`.
    extern "tsohost:driver/host@0.2.0" fn @"storage-scan"(
        start: [*]const u8,
        start_len: usize,
        end: [*]const u8,
        end_len: usize,
        limit: u32,
        ret: *List(KeyValue),
    ) void;
    extern "tsohost:driver/host@0.2.0" fn @"now-ms"() u64;
    /// The `leadership` record flattens to 6 parameters.
    extern "tsohost:driver/host@0.2.0" fn @"report-leadership"(
        role: Role,
        leader_is_some: bool,
        leader: u64,
        epoch_hi: u64,
        epoch_lo: u64,
        lease_until_ms: u64,
    ) void;
    /// `outcome: result<u64, driver-error>` flattens to a discriminant and
    /// three i64 slots: the u64, or the driver-error's case and payload.
    extern "tsohost:driver/host@0.2.0" fn completed(request: u64, is_err: bool, slot0: u64, slot1: u64, slot2: u64) void;
    extern "tsohost:driver/host@0.2.0" fn log(level: LogLevel, message: [*]const u8, message_len: usize) void;
    extern "tsohost:driver/host@0.2.0" fn @"report-membership"(members: [*]const Peer, members_len: usize) void;
};

fn storageGet(key: []const u8) ?[]const u8 {
    var ret: OptionBytes = undefined;
    host.@"storage-get"(key.ptr, key.len, &ret);
    return if (ret.is_some) ret.value.slice() else null;
}

fn storageWrite(puts: []const KeyValue, sync: bool) error{Driver}!void {
    var ret: UnitResult = undefined;
    host.@"storage-write"(puts.ptr, puts.len, null, 0, sync, &ret);
    if (ret.is_err) return fail(ret.err);
}

fn reportLeadership(node_id: u64, epoch: Epoch, lease_until_ms: u64) void {
    host.@"report-leadership"(.leader, true, node_id, epoch.hi, epoch.lo, lease_until_ms);
}

fn complete(request: u64, outcome: error{Driver}!u64) void {
    const value = outcome catch {
        const slot1, const slot2 = failure.flatPayload();
        return host.completed(request, true, @backingInt(failure.case), slot1, slot2);
    };
    host.completed(request, false, value, 0, 0);
}

fn log(level: LogLevel, message: []const u8) void {
    host.log(level, message.ptr, message.len);
}

// ---------------------------------------------------------------------------
// Canonical ABI (32-bit memory), for the types of this world.
//
// Flat (parameters and results): u64 is an i64; u32, bool, enum cases,
// pointers and lengths are i32; a string or list is (pointer, length); a
// record is its fields in order; an option or variant is a discriminant
// followed by its cases' payload slots joined position by position (i32
// with i64 gives i64). Past 16 flat parameters or 1 flat result, values go
// through memory: an import then takes a pointer to a return area as its
// last parameter, an export returns a pointer to one.
//
// In memory: fields at their natural alignment, a record aligned to its
// largest field; a variant is a u8 discriminant, then its payload at the
// largest alignment of its cases. The `extern struct`s below have exactly
// that layout (checked at compile time) and mirror the WIT types.

fn List(comptime T: type) type {
    return extern struct {
        ptr: [*]const T,
        len: usize,

        fn of(s: []const T) @This() {
            return .{ .ptr = s.ptr, .len = s.len };
        }

        fn slice(self: @This()) []const T {
            return self.ptr[0..self.len];
        }

        /// The host checks that even an empty list's pointer is aligned
        /// and inside memory; an empty Zig slice promises neither.
        const empty: @This() = .{ .ptr = @ptrFromInt(@alignOf(T)), .len = 0 };
    };
}

/// `string` and `list<u8>`.
const Bytes = List(u8);

/// `tuple<list<u8>, list<u8>>` and `tuple<string, string>`.
const KeyValue = extern struct { key: Bytes, value: Bytes };

const Peer = extern struct { id: u64, address: Bytes };

const Epoch = extern struct {
    hi: u64,
    lo: u64,

    /// Epochs are ordered by `(hi, lo)` lexicographically.
    fn order(a: Epoch, b: Epoch) std.math.Order {
        const hi = std.math.order(a.hi, b.hi);
        return if (hi != .eq) hi else std.math.order(a.lo, b.lo);
    }
};

const Role = enum(u8) { leader, follower, candidate };

const LogLevel = enum(u8) { @"error", warn, info, debug, trace };

const DriverInfo = extern struct { name: Bytes, version: Bytes };

const OptionBytes = extern struct { is_some: bool, value: Bytes };

const DriverError = extern struct {
    case: enum(u8) { not_leader, fenced, out_of_range, storage, invalid_config, internal },
    payload: extern union {
        leader: extern struct { is_some: bool, id: u64 },
        epoch: Epoch,
        value: u64,
        message: Bytes,
    },

    fn message(case: @FieldType(DriverError, "case"), text: []const u8) DriverError {
        return .{ .case = case, .payload = .{ .message = .of(text) } };
    }

    /// The payload as the two i64 slots that follow the case when the error
    /// is flattened (joined with the other cases', unused slots zero).
    fn flatPayload(self: DriverError) [2]u64 {
        const p = self.payload;
        return switch (self.case) {
            .not_leader => .{ @intFromBool(p.leader.is_some), if (p.leader.is_some) p.leader.id else 0 },
            .fenced => .{ p.epoch.hi, p.epoch.lo },
            .out_of_range => .{ p.value, 0 },
            .storage, .invalid_config, .internal => .{ @intFromPtr(p.message.ptr), p.message.len },
        };
    }
};

/// `result<_, driver-error>`.
const UnitResult = extern struct { is_err: bool, err: DriverError };

/// `metric`, 40 bytes aligned to 8: `name` (pointer, length) at 0, `help`
/// at 8, `value` at 16 (its u8 case at 16, 0 = counter, 1 = gauge; the
/// u64/s64 at 24), `labels` (pointer, length) at 32.
const Metric = extern struct {
    name: Bytes,
    help: Bytes,
    value: extern struct {
        case: enum(u8) { counter, gauge },
        payload: extern union { counter: u64, gauge: i64 },
    },
    labels: List(KeyValue),

    // `comptime` texts are literals, so they outlive the call that returns them.
    fn counter(comptime metric_name: []const u8, comptime help: []const u8, value: u64) Metric {
        return .{
            .name = .of(metric_name),
            .help = .of(help),
            .value = .{ .case = .counter, .payload = .{ .counter = value } },
            .labels = .empty,
        };
    }

    fn gauge(comptime metric_name: []const u8, comptime help: []const u8, value: i64) Metric {
        return .{
            .name = .of(metric_name),
            .help = .of(help),
            .value = .{ .case = .gauge, .payload = .{ .gauge = value } },
            .labels = .empty,
        };
    }
};

comptime {
    const assert = std.debug.assert;
    assert(@sizeOf(Bytes) == 8 and @sizeOf(KeyValue) == 16);
    assert(@sizeOf(Peer) == 16 and @offsetOf(Peer, "address") == 8);
    assert(@sizeOf(OptionBytes) == 12 and @offsetOf(OptionBytes, "value") == 4);
    assert(@sizeOf(DriverError) == 24 and @offsetOf(DriverError, "payload") == 8);
    assert(@sizeOf(UnitResult) == 32 and @offsetOf(UnitResult, "err") == 8);
    assert(@sizeOf(Metric) == 40 and @alignOf(Metric) == 8);
    assert(@offsetOf(Metric, "help") == 8 and @offsetOf(Metric, "value") == 16 and @offsetOf(Metric, "labels") == 32);
    assert(@offsetOf(@FieldType(Metric, "value"), "payload") == 8);
}

/// Guest memory for what the host passes in (arguments, storage values) and
/// for the messages the driver formats: a bump allocator from the linker's
/// heap base, growing the memory as needed, emptied by each export once the
/// host is done with the call. Nothing in it outlives a call.
const heap = struct {
    extern var __heap_base: u8;
    var top: usize = 0; // 0 until the first allocation

    const page = 64 * 1024;

    /// Traps when the memory cannot grow: `cabi_realloc` has no way to fail.
    fn alloc(size: usize, alignment: usize) [*]u8 {
        if (top == 0) reset();
        const start = std.mem.alignForward(usize, top, alignment);
        const end = std.math.add(usize, start, size) catch @trap();
        const pages = end / page + @intFromBool(end % page != 0);
        const have = @wasmMemorySize(0);
        if (pages > have and @wasmMemoryGrow(0, pages - have) < 0) @trap();
        top = end;
        return @ptrFromInt(start);
    }

    fn reset() void {
        top = @intFromPtr(&__heap_base);
    }
};

/// The canonical ABI's allocator: the host calls it to place lists and
/// strings it passes in.
export fn cabi_realloc(old: ?[*]u8, old_size: usize, alignment: usize, new_size: usize) [*]u8 {
    if (old) |p| if (new_size <= old_size) return p;
    const new = heap.alloc(new_size, alignment);
    if (old) |p| @memcpy(new[0..old_size], p[0..old_size]);
    return new;
}

/// `std.fmt` into the heap.
fn format(comptime fmt: []const u8, args: anytype) []const u8 {
    const len = std.fmt.count(fmt, args);
    return std.fmt.bufPrint(heap.alloc(len, 1)[0..len], fmt, args) catch unreachable;
}
