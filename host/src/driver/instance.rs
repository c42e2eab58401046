//! One live guest instance, called synchronously: build it (instantiate,
//! `init`), hand it commands, peer messages and ticks, and release it.
//!
//! Both the node's [`super::actor`] (one thread per driver) and the
//! simulator (`crate::sim`, every node of a cluster on one thread) run
//! guests through this type, so a trap, an overrun or an exhausted memory
//! is noticed, described and recovered from the same way in both.
//!
//! Invariants:
//! - every call runs under the per-call time limit and the memory cap;
//! - a call that fails poisons the instance: the caller drops it with
//!   [`Instance::release`], which fails every request it held (in request
//!   order), and builds a fresh one from the same component and storage;
//! - the guest's imports only queue [`Event`]s, so the guest is never
//!   re-entered.

use super::bindings::{Bindings, Config, DriverError, on_driver};
use super::component::{GuestLimits, LoadedDriver};
use super::fault::{GuestFault, GuestFaults};
use super::protocol::{Command, Event};
use super::sandbox::{self, GuestState};
use crate::clock::Clock;
use crate::storage::Storage;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use wasmtime::Store;

/// `init` may do more work than an event (replaying a log): it gets this many
/// per-call time limits.
pub const INIT_TIME_FACTOR: u32 = 5;

/// Everything an instance is built from but the component.
pub struct Setup {
    pub config: Config,
    /// The driver's storage namespace.
    pub storage: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
    /// Where the guest's imports put what it does.
    pub events: UnboundedSender<Event>,
    pub faults: Arc<GuestFaults>,
    /// Guest linear memory cap, bytes.
    pub memory_limit: usize,
    /// Longest one call into the guest may run.
    pub call_timeout: Duration,
    /// An injected hang interrupts the guest at once, as the time limit
    /// would after `call_timeout`, instead of blocking for it: the
    /// simulator accounts the time on its own clock.
    pub instant_hangs: bool,
    /// Report each successful storage write as [`Event::Wrote`].
    pub observe_writes: bool,
}

/// Why an instance could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// Instantiation or `init` trapped or overran: try again later.
    Crashed(String),
    /// `init` refused the config: the driver will never start with it.
    Refused(DriverError),
}

/// A guest that finished `init`.
pub struct Instance {
    store: Store<GuestState>,
    bindings: Bindings,
    call_timeout: Duration,
    memory_limit: usize,
}

impl Instance {
    /// Instantiate `driver` and call `init` with `setup.config`.
    pub fn build(driver: &LoadedDriver, setup: Setup) -> Result<Instance, BuildError> {
        let mut state = GuestState::new(
            setup.memory_limit,
            setup.config.seed,
            setup.events,
            setup.clock,
            setup.faults,
            setup.call_timeout,
        );
        state.instant_hangs = setup.instant_hangs;
        state.observe_writes = setup.observe_writes;
        // The component's `info` was asked, and its name checked, when it
        // was loaded (see `Runtime::load`).
        state.set_name(&driver.info.name, setup.config.node_id);
        state.storage = Some(setup.storage);
        let mut store = sandbox::store(driver.pre.engine(), state, setup.call_timeout);
        let limits = GuestLimits {
            memory: setup.memory_limit,
            call_timeout: setup.call_timeout,
        };
        let describe = |store: &Store<GuestState>, call: &str, e: wasmtime::Error| {
            describe(store, limits, call, e)
        };
        let bindings = driver
            .pre
            .instantiate(&mut store)
            .map_err(|e| BuildError::Crashed(describe(&store, "instantiation", e)))?;
        store.data_mut().begin_call();
        store.set_epoch_deadline(sandbox::deadline_ticks(
            setup.call_timeout * INIT_TIME_FACTOR,
        ));
        match on_driver!(&bindings, driver => driver.call_init(&mut store, &setup.config)) {
            Err(e) => Err(BuildError::Crashed(describe(&store, "init", e))),
            Ok(Err(error)) => Err(BuildError::Refused(error)),
            Ok(Ok(())) => Ok(Instance {
                store,
                bindings,
                call_timeout: setup.call_timeout,
                memory_limit: setup.memory_limit,
            }),
        }
    }

    /// Reset the per-call budgets and the time limit before a call.
    fn begin(&mut self) {
        self.store.data_mut().begin_call();
        self.store
            .set_epoch_deadline(sandbox::deadline_ticks(self.call_timeout));
    }

    fn failed(&self, call: &str, e: wasmtime::Error) -> String {
        let limits = GuestLimits {
            memory: self.memory_limit,
            call_timeout: self.call_timeout,
        };
        describe(&self.store, limits, call, e)
    }

    /// Hand the guest a request (or a shutdown, which is not the guest's).
    pub fn command(&mut self, command: Command) -> Result<(), String> {
        self.begin();
        let store = &mut self.store;
        let (call, result) = on_driver!(&self.bindings, driver => match command {
            Command::LoadHighWater { request } => {
                store.data_mut().pending.insert(request);
                (
                    "load-high-water",
                    driver.call_load_high_water(store, request),
                )
            }
            Command::PersistHighWater {
                request,
                at_least,
                epoch,
            } => {
                store.data_mut().pending.insert(request);
                (
                    "persist-high-water",
                    driver.call_persist_high_water(store, request, at_least, epoch),
                )
            }
            Command::ChangeMembership { request, members } => {
                store.data_mut().pending.insert(request);
                (
                    "change-membership",
                    driver.call_change_membership(store, request, &members),
                )
            }
            Command::TransferLeadership { request, to } => {
                store.data_mut().pending.insert(request);
                (
                    "transfer-leadership",
                    driver.call_transfer_leadership(store, request, to),
                )
            }
            Command::Stats { reply } => {
                let stats = self.bindings.stats(&mut *store);
                let stats = stats.map_err(|e| self.failed("stats", e))?;
                // The asker may have given up waiting: nothing is lost.
                let _ = reply.send(stats);
                return Ok(());
            }
            Command::Shutdown => return Ok(()),
        });
        result.map_err(|e| self.failed(call, e))
    }

    /// Peer messages, one `on-message` call each, each with its own time
    /// budget. After a failure the rest are dropped with the instance. An
    /// injected `exhaust` grows the first past the guest's memory cap.
    pub fn messages(&mut self, mut messages: Vec<(u64, Vec<u8>)>) -> Result<(), String> {
        if let Some((_, payload)) = messages.first_mut()
            && self.store.data().faults.take(GuestFault::Exhaust)
        {
            tracing::warn!("fault injection: a peer message larger than the guest's memory cap");
            payload.resize(self.memory_limit + 1, 0);
        }
        for (from, payload) in messages {
            self.begin();
            let store = &mut self.store;
            let result =
                on_driver!(&self.bindings, driver => driver.call_on_message(store, from, &payload));
            result.map_err(|e| self.failed("on-message", e))?;
        }
        Ok(())
    }

    /// Time passes; the monotonic ms at which the guest wants its next tick.
    pub fn tick(&mut self, now_ms: u64) -> Result<u64, String> {
        self.begin();
        let store = &mut self.store;
        let result = on_driver!(&self.bindings, driver => driver.call_on_tick(store, now_ms));
        result.map_err(|e| self.failed("on-tick", e))
    }

    /// Bytes of linear memory the guest holds, summed over its core memories
    /// (a component may have several; the cap applies to each): how close a
    /// single-memory guest is to its cap, and a bound on the RAM it costs
    /// the host (only the pages it touched are resident). Linear memory
    /// never shrinks, so this is also the most the guest has held. Exact
    /// until a call fails (see [`sandbox::MeteredLimits`]);
    /// docs/benchmarks.md ("Drivers: start-up time and guest memory")
    /// measures it per driver.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limits.granted()
    }

    /// Drop the instance and fail every request it held, in request order.
    pub fn release(self) {
        let state = self.store.data();
        for &request in &state.pending {
            state.emit(Event::Completed {
                request,
                outcome: Err(DriverError::Internal(format!(
                    "the driver instance was lost before completing request {request}"
                ))),
            });
        }
    }
}

/// Why a call failed, in words an operator can act on.
///
/// The first line is the whole story on one line: what failed, why, and
/// what the guest said last (its exception message, where its language
/// runtime wrote one, and its last lines of output; see
/// [`super::guest_output`]). The wasm backtrace, if any, follows on the
/// next lines; [`summary`] keeps the first line only.
pub(super) fn describe(
    store: &Store<GuestState>,
    limits: GuestLimits,
    call: &str,
    e: wasmtime::Error,
) -> String {
    let GuestLimits {
        memory: memory_limit,
        call_timeout,
    } = limits;
    let state = store.data();
    let name = &state.name;
    let (cause, backtrace) = cause_and_backtrace(&e);
    let what = if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        format!(
            "driver {name}: `{call}` ran longer than the per-call limit ({call_timeout:?}); the \
             guest was stopped"
        )
    } else if cause.contains("forcing trap when growing memory") {
        // StoreLimits with trap_on_grow_failure: the guest asked for more
        // memory than its cap.
        format!(
            "driver {name}: `{call}` exceeded the guest memory limit ({} MiB); the guest was \
             stopped",
            memory_limit >> 20
        )
    } else {
        format!("driver {name}: `{call}` trapped: {cause}")
    };
    let mut text = what + &said(&state.output.tail());
    if let Some(backtrace) = backtrace {
        text.push('\n');
        text.push_str(&backtrace);
    }
    text
}

/// Lines of the guest's output a trap's report quotes, and how long each
/// may be there.
const QUOTED_LINES: usize = 4;
const QUOTED_CHARS: usize = 200;

/// What the guest said before it failed, for the end of a report's first
/// line: "; the guest's exception: …; its last output: "…" | "…"", or
/// nothing if it wrote nothing.
fn said(tail: &[String]) -> String {
    let mut out = String::new();
    if let Some(exception) = super::guest_output::exception(tail) {
        out.push_str(&format!("; the guest's exception: {}", quote(&exception)));
    }
    let last = &tail[tail.len().saturating_sub(QUOTED_LINES)..];
    if !last.is_empty() {
        let lines: Vec<String> = last.iter().map(|l| format!("\"{}\"", quote(l))).collect();
        out.push_str(&format!("; its last output: {}", lines.join(" | ")));
    }
    out
}

/// At most [`QUOTED_CHARS`] characters of `line`.
fn quote(line: &str) -> String {
    match line.char_indices().nth(QUOTED_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// The error's causes on one line, and wasmtime's wasm backtrace (frame
/// addresses, rarely names), which it attaches as one of the causes.
fn cause_and_backtrace(e: &wasmtime::Error) -> (String, Option<String>) {
    let mut causes = Vec::new();
    let mut backtrace = None;
    for cause in e.chain() {
        let text = cause.to_string();
        if text.starts_with("error while executing at wasm backtrace") {
            backtrace = Some(text);
        } else {
            causes.push(text.lines().map(str::trim).collect::<Vec<_>>().join(" "));
        }
    }
    (causes.join(": "), backtrace)
}

/// The first line of a failure's description: what failed, why, and what
/// the guest said last, without the backtrace.
pub fn summary(reason: &str) -> &str {
    reason.lines().next().unwrap_or_default()
}
