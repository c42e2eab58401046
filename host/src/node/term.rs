//! The term state machine: when this node may serve, sans IO.
//!
//! A term is one stretch of leadership in one driver epoch
//! (docs/architecture.md §3). On a leadership report naming this node the
//! machine (1) asks the driver for a linearizable read of the high water,
//! (2) persists `max(now, high water) + window` through the driver, and
//! (3) only then lets the [`Allocator`] serve. While serving it starts a
//! background extension once a third of the window is used (less than two
//! thirds of it left), so a slow persist has two thirds of a window to land.
//! It stops serving at once on any sign of lost leadership: a report naming
//! another node, a fenced or not-leader persist, a crashed driver, or the
//! node being held (sealed for a migration).
//!
//! Events come in as method calls ([`TermMachine::on_leadership`],
//! [`TermMachine::on_completed`], [`TermMachine::on_tick`], ...), with the
//! node's [`Allocator`] (also pure) and, where time matters, the [`Now`] the
//! caller sampled; what must happen outside comes back as [`Effect`]s. The machine owns no
//! clock, thread, channel or socket, so every sequence of events can be
//! replayed in a unit test, a property test or a simulation.
//!
//! Invariants (checked by the property test below):
//! - the allocator serves only after a start-up persist of the current
//!   epoch completed, in that epoch, since this node last began leading;
//! - it never serves at or past the lease the driver reported
//!   ([`Allocator::grant`] checks the lease on the monotonic clock);
//! - a completion of an older epoch or term changes nothing;
//! - under a steady clock with a driver that answers within a third of the
//!   window, the window is extended before it runs out.

use crate::allocator::{Allocator, Now, Term};
use crate::driver::bindings::describe;
use crate::driver::{DriverError, Epoch, Leadership, Role};

/// After a failed load or start-up persist, wait this long and try again.
pub const RETRY_DELAY_MS: u64 = 200;

/// A request the machine makes of the driver. The caller gives it an id,
/// sends the matching driver command, and hands the request back with its
/// outcome to [`TermMachine::on_completed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Step (1): the linearizable read of the durable high water.
    Load { epoch: Epoch },
    /// Step (2): the start-up persist of `term`, at least `target`.
    Start {
        epoch: Epoch,
        term: Term,
        target: u64,
    },
    /// A background extension of the serving `term` to at least `target`.
    Extend {
        epoch: Epoch,
        term: Term,
        target: u64,
    },
}

impl Request {
    /// The epoch the driver must fence the request with.
    pub fn epoch(&self) -> Epoch {
        match *self {
            Request::Load { epoch }
            | Request::Start { epoch, .. }
            | Request::Extend { epoch, .. } => epoch,
        }
    }

    /// The high water to persist, for the two persists.
    pub fn target(&self) -> Option<u64> {
        match *self {
            Request::Load { .. } => None,
            Request::Start { target, .. } | Request::Extend { target, .. } => Some(target),
        }
    }

    /// The driver call that carries out this request as request `id`: the
    /// one mapping the coordinator and the simulator both send.
    pub fn command(&self, id: u64) -> crate::driver::Command {
        use crate::driver::Command;
        match *self {
            Request::Load { .. } => Command::LoadHighWater { request: id },
            Request::Start { epoch, target, .. } | Request::Extend { epoch, target, .. } => {
                Command::PersistHighWater {
                    request: id,
                    at_least: target,
                    epoch,
                }
            }
        }
    }
}

/// What the caller must do after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Send this request to the driver.
    Send(Request),
    /// Serving began, below the durable `high_water` (ms): wake waiting
    /// requests.
    Serving { high_water: u64 },
    /// The serving term's high water moved to `high_water`: wake waiting
    /// requests.
    Extended { high_water: u64 },
    /// Not serving any more (or still not): the allocator was stopped.
    Stopped,
    /// This node serves, or follows a leader it knows: whoever waits for the
    /// node to settle (a refused swap's answer) may be answered.
    Settled,
}

/// Where a term is in its start-up sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting to (re)try the linearizable load.
    Idle,
    Loading,
    Starting(Term),
    Serving(Term),
}

#[derive(Debug, Clone, Copy)]
struct Leading {
    epoch: Epoch,
    lease_until_ms: u64,
    stage: Stage,
}

/// The term logic of one node. See the module doc for its invariants.
#[derive(Debug, Clone)]
pub struct TermMachine {
    node_id: u64,
    /// Every term serves above this (a migration's floor, ms).
    floor: u64,
    /// Held (sealed for a migration): this node does not lead under the
    /// running driver, whatever it reports.
    held: bool,
    leading: Option<Leading>,
    /// Monotonic ms at which an idle term retries its load.
    retry_at_ms: Option<u64>,
    /// The driver's latest leadership report, replayed when released.
    last_report: Option<Leadership>,
}

impl TermMachine {
    pub fn new(node_id: u64, floor: u64, held: bool) -> TermMachine {
        TermMachine {
            node_id,
            floor,
            held,
            leading: None,
            retry_at_ms: None,
            last_report: None,
        }
    }

    /// Leading in some epoch (serving or on the way to it).
    pub fn is_leading(&self) -> bool {
        self.leading.is_some()
    }

    /// The epoch this node leads in.
    pub fn epoch(&self) -> Option<Epoch> {
        self.leading.map(|l| l.epoch)
    }

    /// When [`Self::on_tick`] has work of its own (a retry), in monotonic ms.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        self.retry_at_ms
    }

    /// Terms from now on serve above `floor` ms (a migration's).
    pub fn set_floor(&mut self, floor: u64) {
        self.floor = floor;
    }

    /// A new driver replaced one with another view of leadership (a
    /// migration): its predecessor's last report is void.
    pub fn forget_report(&mut self) {
        self.last_report = None;
    }

    /// The driver reported leadership.
    pub fn on_leadership(&mut self, alloc: &mut Allocator, report: Leadership) -> Vec<Effect> {
        self.last_report = Some(report);
        let leads = report.role == Role::Leader && report.leader == Some(self.node_id);
        if !leads || self.held {
            let mut effects = self.lose(alloc);
            if report.leader.is_some() {
                effects.push(Effect::Settled);
            }
            return effects;
        }
        match &mut self.leading {
            Some(leading) if leading.epoch == report.epoch => {
                leading.lease_until_ms = report.lease_until_ms;
                match leading.stage {
                    Stage::Serving(term) => {
                        alloc.renew_lease(term, report.lease_until_ms);
                        vec![Effect::Settled]
                    }
                    _ => Vec::new(),
                }
            }
            _ => {
                let mut effects = self.lose(alloc);
                tracing::info!("leading in epoch {}: loading the high water", report.epoch);
                self.leading = Some(Leading {
                    epoch: report.epoch,
                    lease_until_ms: report.lease_until_ms,
                    stage: Stage::Idle,
                });
                effects.extend(self.start_load());
                effects
            }
        }
    }

    /// A request made by this machine completed.
    pub fn on_completed(
        &mut self,
        alloc: &mut Allocator,
        request: Request,
        outcome: Result<u64, DriverError>,
        now: Now,
    ) -> Vec<Effect> {
        let Some(leading) = self.leading else {
            return Vec::new();
        };
        match (request, outcome) {
            (Request::Load { epoch }, Ok(loaded))
                if epoch == leading.epoch && leading.stage == Stage::Loading =>
            {
                // Step (2): persist a window above everything issued before.
                let (term, target) = alloc.start_term(loaded.max(self.floor), now);
                self.set_stage(Stage::Starting(term));
                vec![Effect::Send(Request::Start {
                    epoch,
                    term,
                    target,
                })]
            }
            (Request::Start { epoch, term, .. }, Ok(persisted))
                if epoch == leading.epoch && leading.stage == Stage::Starting(term) =>
            {
                // Step (3): serve.
                if !alloc.serve(term, persisted, leading.lease_until_ms) {
                    return Vec::new();
                }
                self.set_stage(Stage::Serving(term));
                vec![
                    Effect::Serving {
                        high_water: alloc.high_water(),
                    },
                    Effect::Settled,
                ]
            }
            (Request::Load { epoch }, Err(error))
                if epoch == leading.epoch && leading.stage == Stage::Loading =>
            {
                self.retry_later(&error, now)
            }
            (Request::Start { epoch, term, .. }, Err(error))
                if epoch == leading.epoch && leading.stage == Stage::Starting(term) =>
            {
                self.retry_later(&error, now)
            }
            (Request::Extend { epoch, term, .. }, outcome)
                if epoch == leading.epoch && leading.stage == Stage::Serving(term) =>
            {
                self.on_extended(alloc, term, outcome)
            }
            // A completion for an epoch or term this node no longer leads in.
            _ => Vec::new(),
        }
    }

    /// The load or start-up persist failed: go idle and retry after
    /// [`RETRY_DELAY_MS`].
    fn retry_later(&mut self, error: &DriverError, now: Now) -> Vec<Effect> {
        tracing::warn!(
            "could not start serving in epoch {}: {}; retrying in {RETRY_DELAY_MS} ms",
            self.epoch().expect("leading"),
            describe(error)
        );
        self.set_stage(Stage::Idle);
        self.retry_at_ms = Some(now.mono_ms + RETRY_DELAY_MS);
        Vec::new()
    }

    /// The extension of the serving `term` completed.
    fn on_extended(
        &mut self,
        alloc: &mut Allocator,
        term: Term,
        outcome: Result<u64, DriverError>,
    ) -> Vec<Effect> {
        match outcome {
            Ok(persisted) => {
                alloc.extended(term, persisted);
                vec![Effect::Extended {
                    high_water: alloc.high_water(),
                }]
            }
            Err(error) => {
                tracing::warn!("extending the high water failed: {}", describe(&error));
                if matches!(error, DriverError::Fenced(_) | DriverError::NotLeader(_)) {
                    self.lose(alloc)
                } else {
                    alloc.extension_failed(term);
                    Vec::new()
                }
            }
        }
    }

    /// Time passed (or a request found the window short): retry a failed
    /// start, and extend the window if it is due.
    pub fn on_tick(&mut self, alloc: &mut Allocator, now: Now) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.retry_at_ms.is_some_and(|at| now.mono_ms >= at) {
            self.retry_at_ms = None;
            effects.extend(self.start_load());
        }
        if let Some(epoch) = self.epoch()
            && let Some((term, target)) = alloc.begin_extension(now)
        {
            effects.push(Effect::Send(Request::Extend {
                epoch,
                term,
                target,
            }));
        }
        effects
    }

    /// Hold (`true`: sealed) or release this node. Held, it stops serving at
    /// once; released, the driver's last report is considered again.
    pub fn set_held(&mut self, alloc: &mut Allocator, held: bool) -> Vec<Effect> {
        self.held = held;
        if held {
            return self.lose(alloc);
        }
        match self.last_report {
            Some(report) => self.on_leadership(alloc, report),
            None => Vec::new(),
        }
    }

    /// Stop serving and forget the term (the driver crashed, the node hands
    /// leadership off, or leadership is lost).
    pub fn lose(&mut self, alloc: &mut Allocator) -> Vec<Effect> {
        self.leading.take();
        self.retry_at_ms = None;
        alloc.stop();
        vec![Effect::Stopped]
    }

    fn start_load(&mut self) -> Option<Effect> {
        let leading = self.leading.as_mut()?;
        if leading.stage != Stage::Idle {
            return None;
        }
        leading.stage = Stage::Loading;
        Some(Effect::Send(Request::Load {
            epoch: leading.epoch,
        }))
    }

    fn set_stage(&mut self, stage: Stage) {
        if let Some(leading) = &mut self.leading {
            leading.stage = stage;
        }
    }
}

#[cfg(test)]
mod tests;
