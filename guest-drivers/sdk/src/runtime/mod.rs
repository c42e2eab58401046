//! An openraft-rt [`AsyncRuntime`] for guests: [`GuestRuntime`].
//!
//! - Tasks run on the [`Executor`] entered by the current export call, until
//!   idle; nothing runs between host calls.
//! - Time is virtual ([`GuestInstant`], microseconds): it moves when the host
//!   calls (`on-tick(now-ms)` or any export that syncs with `now-ms`), plus
//!   the [`MICRO_SLEEP`] jumps that let openraft's post-write micro-sleeps
//!   complete without waiting for a tick.
//! - Randomness comes from the executor's seed ([`GuestRuntime::thread_rng`]).
//! - `spawn_blocking` runs the closure inline: a guest has one thread.
//! - Channels and the mutex are tokio's `sync` primitives, which need no
//!   tokio runtime ([`sync`]).
//!
//! Consensus crates other than openraft can use the executor directly.

mod executor;
pub mod rpc;
pub mod sync;

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

pub use executor::{Executor, MICRO_SLEEP};
use executor::{Inner, ORIGIN_US, current};
use openraft_rt::{AsyncRuntime, OptionalSend};
use rand::SeedableRng;
use rand::rngs::SmallRng;

/// The guest runtime. Its methods act on the executor entered on this
/// thread; an instance (from [`AsyncRuntime::new`]) owns an executor for
/// `block_on`, which tests use.
#[derive(Debug)]
pub struct GuestRuntime {
    executor: Executor,
}

impl GuestRuntime {
    /// The executor `block_on` runs on.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }
}

/// A point on the virtual clock, in microseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestInstant(u64);

impl GuestInstant {
    /// The host-clock millisecond this instant falls in (rounded down).
    pub fn as_host_ms(self) -> u64 {
        self.0.saturating_sub(ORIGIN_US) / 1000
    }

    /// The instant at the start of host millisecond `ms`.
    pub fn from_host_ms(ms: u64) -> Self {
        GuestInstant(ORIGIN_US + ms.saturating_mul(1000))
    }
}

impl fmt::Debug for GuestInstant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.saturating_sub(ORIGIN_US);
        write!(f, "T+{}.{:03}ms", us / 1000, us % 1000)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Add<Duration> for GuestInstant {
    type Output = GuestInstant;
    fn add(self, d: Duration) -> GuestInstant {
        GuestInstant(self.0.saturating_add(micros(d)))
    }
}

impl AddAssign<Duration> for GuestInstant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for GuestInstant {
    type Output = GuestInstant;
    fn sub(self, d: Duration) -> GuestInstant {
        GuestInstant(self.0.saturating_sub(micros(d)))
    }
}

impl SubAssign<Duration> for GuestInstant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<GuestInstant> for GuestInstant {
    type Output = Duration;
    fn sub(self, earlier: GuestInstant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl openraft_rt::Instant for GuestInstant {
    fn now() -> Self {
        GuestInstant(current().now_us())
    }
}

/// A timer on the virtual clock.
pub struct Sleep {
    deadline: GuestInstant,
    timer: Option<(Weak<Inner>, (u64, u64))>,
}

impl Sleep {
    fn until(deadline: GuestInstant) -> Self {
        Sleep {
            deadline,
            timer: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let exec = current();
        if exec.now_us() >= self.deadline.0 {
            if let Some((_, key)) = self.timer.take() {
                exec.cancel_timer(key);
            }
            return Poll::Ready(());
        }
        let key = self.timer.as_ref().map(|(_, k)| *k);
        let key = exec.register_timer(key, self.deadline.0, cx.waker());
        self.timer = Some((exec.downgrade(), key));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((exec, key)) = self.timer.take()
            && let Some(exec) = exec.upgrade()
        {
            exec.cancel_timer(key);
        }
    }
}

/// The error of a [`Timeout`] that expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

pin_project_lite::pin_project! {
    /// A future bounded by a deadline on the virtual clock.
    pub struct Timeout<R, F> {
        #[pin]
        fut: F,
        sleep: Sleep,
        _r: std::marker::PhantomData<fn() -> R>,
    }
}

impl<R, F: Future<Output = R>> Future for Timeout<R, F> {
    type Output = Result<R, Elapsed>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A spawned task's result slot.
struct JoinSlot<T> {
    value: Option<T>,
    finished: bool,
    waker: Option<Waker>,
}

/// Awaits a spawned task. Dropping it detaches the task.
pub struct JoinHandle<T> {
    slot: Rc<RefCell<JoinSlot<T>>>,
}

/// A task ended without producing its value: its executor was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task cancelled: its executor was dropped")
    }
}

impl std::error::Error for Cancelled {}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, Cancelled>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.slot.borrow_mut();
        if let Some(v) = slot.value.take() {
            return Poll::Ready(Ok(v));
        }
        if slot.finished {
            return Poll::Ready(Err(Cancelled));
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Marks the slot finished however the task ends (completion or drop).
struct Finish<T>(Rc<RefCell<JoinSlot<T>>>);

impl<T> Drop for Finish<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.0.borrow_mut();
            slot.finished = true;
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Spawn on the executor entered on this thread.
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let slot = Rc::new(RefCell::new(JoinSlot {
        value: None,
        finished: false,
        waker: None,
    }));
    let finish = Finish(slot.clone());
    current().spawn(Box::pin(async move {
        let v = fut.await;
        finish.0.borrow_mut().value = Some(v);
        drop(finish);
    }));
    JoinHandle { slot }
}

impl AsyncRuntime for GuestRuntime {
    type JoinError = Cancelled;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = GuestInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<R, T>;
    type ThreadLocalRng = SmallRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Sleep::until(<GuestInstant as openraft_rt::Instant>::now() + duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Sleep::until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Self::timeout_at(
            <GuestInstant as openraft_rt::Instant>::now() + duration,
            future,
        )
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            fut: future,
            sleep: Sleep::until(deadline),
            _r: std::marker::PhantomData,
        }
    }

    fn is_panic(_: &Self::JoinError) -> bool {
        false
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        SmallRng::seed_from_u64(current().next_seed())
    }

    type Mpsc = sync::GuestMpsc;
    type Watch = sync::GuestWatch;
    type Oneshot = sync::GuestOneshot;
    type Mutex<T: OptionalSend + 'static> = sync::GuestMutex<T>;

    fn new(_threads: usize) -> Self {
        GuestRuntime {
            executor: Executor::new(0, 0),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.executor.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let v = f();
        std::future::ready(Ok(v))
    }
}

#[cfg(test)]
mod tests;
