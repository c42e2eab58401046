//! A single-threaded executor with a virtual clock, driven by host calls.
//!
//! A guest never blocks: every export runs the executor until no task can
//! make progress ([`Executor::run_until_idle`]) and returns. Time moves only
//! when the host says so ([`Executor::advance_to`], fed from `on-tick` and
//! `now-ms`), which makes a driver a deterministic function of its inputs.
//!
//! Several executors may live on one thread (a native simulation runs a whole
//! cluster in one test): the one a future uses is the one *entered* while it
//! is polled ([`Executor::enter`]), found through a thread-local.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// How far the executor may move its clock on its own when nothing else can
/// run. openraft sleeps ~1 µs after every storage write to batch IO; with a
/// clock that moved only on host ticks, every write would wait for the next
/// tick. Timers due within this window are treated as due now.
pub const MICRO_SLEEP: Duration = Duration::from_micros(100);

/// Virtual time starts this far above zero so that `now - d` never
/// underflows for any duration openraft subtracts (leases, timeouts): about
/// 12.7 days.
pub(crate) const ORIGIN_US: u64 = 1 << 40;

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// A wake-up queue shared with wakers. Wakers must be `Send + Sync` by
/// contract, so this is the only piece behind a lock.
type ReadyQueue = Arc<Mutex<VecDeque<u64>>>;

struct TaskWaker {
    id: u64,
    queued: AtomicBool,
    ready: ReadyQueue,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(self.id);
        }
    }
}

/// The id of the future passed to `block_on`, which is not a spawned task.
const MAIN: u64 = u64::MAX;

pub(crate) struct Inner {
    now_us: Cell<u64>,
    /// Microseconds the clock ran ahead of the host's by [`MICRO_SLEEP`]
    /// jumps since the host last moved it; observable for diagnostics.
    ahead_us: Cell<u64>,
    tasks: RefCell<HashMap<u64, (Task, Arc<TaskWaker>)>>,
    next_task: Cell<u64>,
    ready: ReadyQueue,
    timers: RefCell<BTreeMap<(u64, u64), Waker>>,
    next_timer: Cell<u64>,
    rng: Cell<u64>,
}

std::thread_local! {
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
}

/// The executor entered on this thread. Panics outside [`Executor::enter`]:
/// a future of this runtime polled elsewhere is a bug in the driver.
pub(crate) fn current() -> Rc<Inner> {
    CURRENT.with_borrow(|c| c.clone()).expect(
        "tsohost guest runtime used outside Executor::enter (a driver bug: enter the executor in every export)",
    )
}

/// One node's executor: its tasks, timers, clock and random seed.
#[derive(Clone)]
pub struct Executor {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("now_us", &self.inner.now_us.get())
            .field("tasks", &self.inner.tasks.borrow().len())
            .field("timers", &self.inner.timers.borrow().len())
            .finish()
    }
}

impl Executor {
    /// A new executor whose clock reads `now_ms` of the host's clock and
    /// whose random numbers derive from `seed` only.
    pub fn new(now_ms: u64, seed: u64) -> Self {
        Executor {
            inner: Rc::new(Inner {
                now_us: Cell::new(ORIGIN_US + now_ms.saturating_mul(1000)),
                ahead_us: Cell::new(0),
                tasks: RefCell::new(HashMap::new()),
                next_task: Cell::new(0),
                ready: Arc::new(Mutex::new(VecDeque::new())),
                timers: RefCell::new(BTreeMap::new()),
                next_timer: Cell::new(0),
                rng: Cell::new(seed),
            }),
        }
    }

    /// Run `f` with this executor as the current one (restoring the previous
    /// one afterwards, so enters nest).
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Rc<Inner>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with_borrow_mut(|c| *c = previous);
            }
        }
        let previous = CURRENT.with_borrow_mut(|c| c.replace(self.inner.clone()));
        let _restore = Restore(previous);
        f()
    }

    /// Spawn a task on this executor; it first runs at the next
    /// [`run_until_idle`](Self::run_until_idle).
    pub fn spawn(&self, fut: impl Future<Output = ()> + 'static) {
        self.inner.spawn(Box::pin(fut));
    }

    /// The clock, in host milliseconds (rounded down).
    pub fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }

    /// Move the clock to the host's `now_ms` (never backwards) and wake the
    /// timers that are due.
    pub fn advance_to_ms(&self, now_ms: u64) {
        let target = ORIGIN_US + now_ms.saturating_mul(1000);
        if target >= self.inner.now_us.get() {
            self.inner.ahead_us.set(0);
        }
        self.inner.advance_to(target);
    }

    /// How far the clock ran ahead of the host's through [`MICRO_SLEEP`]
    /// jumps since the host last moved it past them.
    pub fn ahead_of_host(&self) -> Duration {
        Duration::from_micros(self.inner.ahead_us.get())
    }

    /// Poll every task that can make progress, repeatedly, until none can.
    /// Timers due within [`MICRO_SLEEP`] fire on the way. Returns the host
    /// millisecond at which the earliest remaining timer is due (rounded up),
    /// if any.
    pub fn run_until_idle(&self) -> Option<u64> {
        self.enter(|| {
            loop {
                if self.inner.poll_ready(None) {
                    continue;
                }
                match self.inner.next_deadline() {
                    Some(d) if d <= self.inner.now_us.get() + MICRO_SLEEP.as_micros() as u64 => {
                        let now = self.inner.now_us.get();
                        if d > now {
                            self.inner
                                .ahead_us
                                .set(self.inner.ahead_us.get() + (d - now));
                        }
                        self.inner.advance_to(d);
                    }
                    _ => break,
                }
            }
            self.inner
                .next_deadline()
                .map(|us| (us - ORIGIN_US).div_ceil(1000))
        })
    }

    /// Run `fut` to completion, jumping the clock to the next timer whenever
    /// nothing can run: simulated time, for tests and `AsyncRuntime::block_on`.
    /// Panics if nothing can ever run again (a deadlock).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.enter(|| {
            let mut fut = std::pin::pin!(fut);
            let main = Arc::new(TaskWaker {
                id: MAIN,
                queued: AtomicBool::new(true),
                ready: self.inner.ready.clone(),
            });
            let waker = Waker::from(main.clone());
            loop {
                if main.queued.swap(false, Ordering::AcqRel)
                    && let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(&waker))
                {
                    return v;
                }
                if self.inner.poll_ready(Some(&main)) || main.queued.load(Ordering::Acquire) {
                    continue;
                }
                match self.inner.next_deadline() {
                    Some(d) => self.inner.advance_to(d),
                    None => panic!("block_on: deadlock, no task can run and no timer is pending"),
                }
            }
        })
    }

    /// A fresh random seed; the sequence is a function of the executor's
    /// seed only.
    pub fn next_seed(&self) -> u64 {
        self.inner.next_seed()
    }
}

impl Inner {
    pub(crate) fn now_us(&self) -> u64 {
        self.now_us.get()
    }

    fn now_ms(&self) -> u64 {
        (self.now_us.get() - ORIGIN_US) / 1000
    }

    pub(crate) fn spawn(&self, task: Task) {
        let id = self.next_task.get();
        self.next_task.set(id + 1);
        let waker = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(true),
            ready: self.ready.clone(),
        });
        self.tasks.borrow_mut().insert(id, (task, waker));
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(id);
    }

    /// Poll the tasks queued at entry (and those they wake) once each.
    /// Returns whether any task was polled. A wake of `main` is left for the
    /// caller.
    fn poll_ready(&self, main: Option<&Arc<TaskWaker>>) -> bool {
        let batch: Vec<u64> =
            std::mem::take(&mut *self.ready.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        let mut polled = false;
        for id in batch {
            if id == MAIN {
                if let Some(main) = main {
                    main.queued.store(true, Ordering::Release);
                }
                continue;
            }
            // Take the task out while polling it: it may spawn or wake others.
            let Some((mut task, waker)) = self.tasks.borrow_mut().remove(&id) else {
                continue;
            };
            waker.queued.store(false, Ordering::Release);
            polled = true;
            let w = Waker::from(waker.clone());
            if task
                .as_mut()
                .poll(&mut Context::from_waker(&w))
                .is_pending()
            {
                self.tasks.borrow_mut().insert(id, (task, waker));
            }
        }
        polled
    }

    fn next_deadline(&self) -> Option<u64> {
        self.timers.borrow().keys().next().map(|(d, _)| *d)
    }

    pub(crate) fn advance_to(&self, target_us: u64) {
        if target_us > self.now_us.get() {
            self.now_us.set(target_us);
        }
        let now = self.now_us.get();
        loop {
            let due = {
                let mut timers = self.timers.borrow_mut();
                match timers.first_key_value() {
                    Some((&(d, _), _)) if d <= now => timers.pop_first(),
                    _ => None,
                }
            };
            match due {
                Some((_, waker)) => waker.wake(),
                None => break,
            }
        }
    }

    /// Register (or refresh) the waker of a timer due at `deadline_us`.
    /// Returns the key to refresh or cancel it with.
    pub(crate) fn register_timer(
        &self,
        key: Option<(u64, u64)>,
        deadline_us: u64,
        waker: &Waker,
    ) -> (u64, u64) {
        let mut timers = self.timers.borrow_mut();
        if let Some(key) = key
            && let Some(w) = timers.get_mut(&key)
        {
            if !w.will_wake(waker) {
                *w = waker.clone();
            }
            return key;
        }
        let seq = self.next_timer.get();
        self.next_timer.set(seq + 1);
        let key = (deadline_us, seq);
        timers.insert(key, waker.clone());
        key
    }

    pub(crate) fn cancel_timer(&self, key: (u64, u64)) {
        self.timers.borrow_mut().remove(&key);
    }

    pub(crate) fn next_seed(&self) -> u64 {
        let s = self.rng.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.rng.set(s);
        let z = (s ^ (s >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn downgrade(self: &Rc<Self>) -> Weak<Inner> {
        Rc::downgrade(self)
    }
}

impl Drop for Executor {
    /// Dropping the last handle drops every task, which breaks the reference
    /// cycles between tasks and the channels they share.
    fn drop(&mut self) {
        if Rc::strong_count(&self.inner) == 1 {
            let tasks = std::mem::take(&mut *self.inner.tasks.borrow_mut());
            self.enter(|| drop(tasks));
            self.inner.timers.borrow_mut().clear();
        }
    }
}
