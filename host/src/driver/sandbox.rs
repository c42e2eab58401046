//! What a guest can touch: the `host` interface and a WASI with every
//! capability denied or virtualized.
//!
//! A guest gets no files, sockets, environment or arguments (its stdout and
//! stderr go to the node's log, through [`GuestOutput`]); its WASI clocks
//! stand still and its WASI randomness is a stream derived from the seed in
//! its config, so a driver's behaviour is a function of its inputs
//! (docs/architecture.md §4). Memory is capped by [`StoreLimits`] (which
//! [`MeteredLimits`] wraps to count what it grants); time per call is bounded
//! by epoch interruption, set by the actor.

use super::bindings::v0_2::tsohost;
use super::bindings::{DriverError, Leadership, LogLevel, Peer, v0_1, v0_2};
use super::fault::{GuestFault, GuestFaults};
use super::guest_output::{GuestOutput, Source};
use super::protocol::Event;
use crate::clock::Clock;
use crate::storage::{Storage, WriteBatch};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

/// How often the engine's epoch advances; per-call time limits are counted
/// in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The epoch ticks of a time limit (at least one).
pub fn deadline_ticks(limit: Duration) -> u64 {
    (limit.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// A store for one guest instance, under its memory cap and with
/// `call_limit` as the time limit of the next call: the one place a
/// guest's `Store` is made, so that no instance runs without its limits.
pub fn store(engine: &Engine, state: GuestState, call_limit: Duration) -> Store<GuestState> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(deadline_ticks(call_limit));
    store
}

/// The guest's limits, [`StoreLimits`] unchanged, plus a count of the
/// linear memory they granted: wasmtime does not expose the core memories
/// inside a component instance, and this is the one place every growth
/// passes through, so it is how the host learns how much memory a guest
/// holds ([`super::instance::Instance::memory_bytes`]).
///
/// Invariants: every decision (the per-memory cap, the trap on a refused or
/// failed growth, the table and instance limits) is [`StoreLimits`]'s;
/// `granted` is the sum, over the store's linear memories, of the bytes
/// each was permitted to reach. A memory's creation is a growth from 0 and
/// linear memory never shrinks, so adding `desired - current` on every
/// permitted growth counts each byte once. A growth that fails after it was
/// permitted (the OS refused) traps the guest, so the count is exact for
/// every instance that has not failed a call.
pub struct MeteredLimits {
    limits: StoreLimits,
    granted: usize,
}

impl MeteredLimits {
    fn new(limits: StoreLimits) -> MeteredLimits {
        MeteredLimits { limits, granted: 0 }
    }

    /// Bytes of linear memory granted so far, over all memories.
    pub fn granted(&self) -> usize {
        self.granted
    }
}

impl ResourceLimiter for MeteredLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.granted = self.granted.saturating_add(desired.saturating_sub(current));
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The most entries one `storage-scan` returns, whatever the guest asks.
pub const MAX_SCAN: usize = 10_000;
/// Per call into the guest: payload bytes `send` may queue, then dropped.
/// Guest memory is capped, but a guest could send the same buffer in a loop
/// until its time runs out; this bounds what that costs the host.
pub const MAX_SEND_BYTES_PER_CALL: usize = 16 << 20;

/// The data of one guest's `Store`.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: MeteredLimits,
    /// The driver's storage namespace; `None` until its name is known.
    pub(super) storage: Option<Arc<dyn Storage>>,
    pub(super) events: UnboundedSender<Event>,
    clock: Arc<dyn Clock>,
    /// Requests handed to this instance and not yet completed (ordered, so
    /// that failing them on a crash is deterministic).
    pub(super) pending: BTreeSet<u64>,
    /// The driver's name, for logs.
    pub(super) name: String,
    /// What the guest writes (stdout, stderr, `log`): rate-limited into the
    /// node's log, its last lines kept for a trap's report.
    pub(super) output: GuestOutput,
    /// What the current call has used of its send budget; reset per call.
    sent_bytes: usize,
    pub(super) faults: Arc<GuestFaults>,
    /// How long an injected hang blocks: past the per-call limit.
    hang_for: Duration,
    /// An injected hang interrupts at once instead of blocking (see
    /// [`super::instance::Setup::instant_hangs`]).
    pub(super) instant_hangs: bool,
    /// Report every successful `storage-write` as [`Event::Wrote`], in order
    /// with the guest's other events (see
    /// [`super::instance::Setup::observe_writes`]).
    pub(super) observe_writes: bool,
}

impl GuestState {
    pub(super) fn new(
        memory_limit: usize,
        seed: u64,
        events: UnboundedSender<Event>,
        clock: Arc<dyn Clock>,
        faults: Arc<GuestFaults>,
        call_timeout: Duration,
    ) -> GuestState {
        let seed_bytes: Vec<u8> = (0..32u64)
            .flat_map(|i| (seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes())
            .collect();
        let output = GuestOutput::new(clock.clone());
        let wasi = WasiCtxBuilder::new()
            .stdout(output.stream(Source::Stdout))
            .stderr(output.stream(Source::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(seed_bytes.clone()))
            .insecure_random(wasmtime_wasi::Deterministic::new(seed_bytes))
            .insecure_random_seed(u128::from(seed))
            .build();
        GuestState {
            wasi,
            table: ResourceTable::new(),
            limits: MeteredLimits::new(
                StoreLimitsBuilder::new()
                    .memory_size(memory_limit)
                    .trap_on_grow_failure(true)
                    .build(),
            ),
            storage: None,
            events,
            clock,
            pending: BTreeSet::new(),
            name: String::from("(unnamed)"),
            output,
            sent_bytes: 0,
            faults,
            hang_for: call_timeout + 4 * EPOCH_TICK,
            instant_hangs: false,
            observe_writes: false,
        }
    }

    /// Fire an injected fault, if one waits (see [`super::fault`]).
    fn fault(&self) -> wasmtime::Result<()> {
        if self.faults.take(GuestFault::Trap) {
            tracing::warn!(driver = %self.name, "fault injection: trapping the guest");
            return Err(wasmtime::format_err!(
                "trap injected through PUT /v1/admin/faults"
            ));
        }
        if self.faults.take(GuestFault::Hang) {
            tracing::warn!(driver = %self.name, "fault injection: hanging the guest");
            if self.instant_hangs {
                return Err(wasmtime::Trap::Interrupt.into());
            }
            std::thread::sleep(self.hang_for);
        }
        Ok(())
    }

    /// Reset the per-call budgets; the actor calls it before every call.
    pub(super) fn begin_call(&mut self) {
        self.output.begin_call();
        self.sent_bytes = 0;
    }

    /// Name the driver (and the node it runs on) in what the host logs of
    /// it.
    pub(super) fn set_name(&mut self, name: &str, node: u64) {
        self.name = name.to_string();
        self.output.attribute(name, node);
    }

    /// The storage for a read, or a trap: before `init` (the probe of `info`)
    /// there is none, and "absent" would be a lie.
    fn readable(&self, call: &str) -> wasmtime::Result<Arc<dyn Storage>> {
        self.storage.clone().ok_or_else(|| {
            wasmtime::format_err!(
                "driver {}: `{call}` before `init`: storage is not available in `info`",
                self.name
            )
        })
    }

    fn read_failed(&self, call: &str, e: crate::storage::StorageError) -> wasmtime::Error {
        tracing::error!(driver = %self.name, "{call} failed: {e}; stopping the instance");
        wasmtime::format_err!("{call} failed: {e} (the instance is rebuilt from storage)")
    }

    fn storage(&self) -> Result<&Arc<dyn Storage>, DriverError> {
        self.storage
            .as_ref()
            .ok_or_else(|| DriverError::Internal("storage is available from init on".into()))
    }

    pub(super) fn emit(&self, event: Event) {
        // The receiver goes away only when the node shuts down.
        let _ = self.events.send(event);
    }
}

/// A linker with the `host` interface of every supported WIT version and
/// the sandboxed WASI.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<GuestState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    v0_2::ConsensusDriver::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |s| s)?;
    v0_1::tsohost::driver::host::add_to_linker::<GuestState, HasSelf<GuestState>>(
        &mut linker,
        |s| s,
    )?;
    Ok(linker)
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// WASI clocks that stand still: real time reaches a driver only as `now-ms`.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl tsohost::driver::types::Host for GuestState {}

impl tsohost::driver::host::Host for GuestState {
    fn send(&mut self, to: u64, payload: Vec<u8>) -> wasmtime::Result<()> {
        self.fault()?;
        self.sent_bytes = self.sent_bytes.saturating_add(payload.len());
        if self.sent_bytes > MAX_SEND_BYTES_PER_CALL {
            self.emit(Event::SendDropped);
            return Ok(());
        }
        self.emit(Event::Send { to, payload });
        Ok(())
    }

    /// A read that fails traps the guest: `storage-get` cannot return an
    /// error in WIT 0.1, and answering "absent" would let a driver believe
    /// a high water or an epoch was never written (and go backwards). The
    /// instance is rebuilt from storage after a backoff, like any trap.
    fn storage_get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.fault()?;
        let storage = self.readable("storage-get")?;
        storage
            .get(&key)
            .map_err(|e| self.read_failed("storage-get", e))
    }

    fn storage_write(
        &mut self,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
        sync: bool,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        self.fault()?;
        let result = self.storage().and_then(|storage| {
            storage
                .write(WriteBatch { puts, deletes }, sync)
                .map_err(|e| DriverError::Storage(e.to_string()))
        });
        if self.observe_writes && result.is_ok() {
            self.emit(Event::Wrote { sync });
        }
        Ok(result)
    }

    fn storage_scan(
        &mut self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    ) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.fault()?;
        let storage = self.readable("storage-scan")?;
        storage
            .scan(&start, &end, (limit as usize).min(MAX_SCAN))
            .map_err(|e| self.read_failed("storage-scan", e))
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.fault()?;
        Ok(self.clock.now().mono_ms)
    }

    fn report_leadership(&mut self, report: Leadership) -> wasmtime::Result<()> {
        self.fault()?;
        self.emit(Event::Leadership(report));
        Ok(())
    }

    fn completed(
        &mut self,
        request: u64,
        outcome: Result<u64, DriverError>,
    ) -> wasmtime::Result<()> {
        self.fault()?;
        if self.pending.remove(&request) {
            self.emit(Event::Completed { request, outcome });
        } else {
            tracing::warn!(
                driver = %self.name,
                "driver completed request {request}, which it was not given or already \
                 completed: ignored (a driver bug)"
            );
        }
        Ok(())
    }

    fn report_membership(&mut self, members: Vec<Peer>) -> wasmtime::Result<()> {
        self.fault()?;
        self.emit(Event::Membership(members));
        Ok(())
    }

    /// Into the node's log, under the same limits as stdout and stderr
    /// (see [`super::guest_output`]).
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.fault()?;
        self.output.log(level, &message);
        Ok(())
    }
}

/// WIT 0.1's `host` is 0.2's, function for function.
impl v0_1::tsohost::driver::host::Host for GuestState {
    fn send(&mut self, to: u64, payload: Vec<u8>) -> wasmtime::Result<()> {
        tsohost::driver::host::Host::send(self, to, payload)
    }

    fn storage_get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        tsohost::driver::host::Host::storage_get(self, key)
    }

    fn storage_write(
        &mut self,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
        sync: bool,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        tsohost::driver::host::Host::storage_write(self, puts, deletes, sync)
    }

    fn storage_scan(
        &mut self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    ) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        tsohost::driver::host::Host::storage_scan(self, start, end, limit)
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        tsohost::driver::host::Host::now_ms(self)
    }

    fn report_leadership(&mut self, report: Leadership) -> wasmtime::Result<()> {
        tsohost::driver::host::Host::report_leadership(self, report)
    }

    fn completed(
        &mut self,
        request: u64,
        outcome: Result<u64, DriverError>,
    ) -> wasmtime::Result<()> {
        tsohost::driver::host::Host::completed(self, request, outcome)
    }

    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        tsohost::driver::host::Host::log(self, level, message)
    }

    fn report_membership(&mut self, members: Vec<Peer>) -> wasmtime::Result<()> {
        tsohost::driver::host::Host::report_membership(self, members)
    }
}
