use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use openraft_rt::{AsyncRuntime, Instant};
use rand::RngExt;

use super::*;

#[test]
fn openraft_rt_suite() {
    openraft_rt::testing::Suite::<GuestRuntime>::test_all();
}

#[test]
fn timers_fire_only_when_the_host_moves_the_clock() {
    let exec = Executor::new(1_000, 7);
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    exec.spawn(async move {
        GuestRuntime::sleep(Duration::from_millis(50)).await;
        f.set(true);
    });
    assert_eq!(exec.run_until_idle(), Some(1_050));
    assert!(!fired.get());
    exec.advance_to_ms(1_049);
    assert_eq!(exec.run_until_idle(), Some(1_050));
    assert!(!fired.get());
    exec.advance_to_ms(1_050);
    assert_eq!(exec.run_until_idle(), None);
    assert!(fired.get());
}

#[test]
fn micro_sleeps_complete_without_a_tick() {
    let exec = Executor::new(5, 0);
    let steps = Rc::new(Cell::new(0));
    let s = steps.clone();
    exec.spawn(async move {
        for _ in 0..10 {
            GuestRuntime::sleep(Duration::from_micros(1)).await;
            s.set(s.get() + 1);
        }
        GuestRuntime::sleep(Duration::from_millis(3)).await;
        s.set(s.get() + 1);
    });
    assert_eq!(exec.run_until_idle(), Some(9));
    assert_eq!(steps.get(), 10);
    assert_eq!(exec.ahead_of_host(), Duration::from_micros(10));
    exec.advance_to_ms(9);
    assert_eq!(exec.ahead_of_host(), Duration::ZERO);
    exec.run_until_idle();
    assert_eq!(steps.get(), 11);
}

#[test]
fn clock_reads_host_milliseconds_and_never_goes_back() {
    let exec = Executor::new(42, 0);
    exec.enter(|| assert_eq!(GuestInstant::now().as_host_ms(), 42));
    exec.advance_to_ms(40);
    exec.enter(|| {
        assert_eq!(GuestInstant::now().as_host_ms(), 42);
        // Subtracting more than the elapsed host time does not underflow.
        let past = GuestInstant::now() - Duration::from_secs(3600);
        assert!(past < GuestInstant::now());
    });
    assert_eq!(GuestInstant::from_host_ms(42).as_host_ms(), 42);
}

#[test]
fn timeout_and_dropped_sleep_unregister_their_timers() {
    let exec = Executor::new(0, 0);
    let out = Rc::new(Cell::new(None));
    let o = out.clone();
    exec.spawn(async move {
        let r =
            GuestRuntime::timeout(Duration::from_millis(10), std::future::pending::<()>()).await;
        o.set(Some(r.is_err()));
    });
    assert_eq!(exec.run_until_idle(), Some(10));
    exec.advance_to_ms(10);
    assert_eq!(exec.run_until_idle(), None, "no timer left behind");
    assert_eq!(out.get(), Some(true));
}

#[test]
fn randomness_is_a_function_of_the_seed() {
    let draw = |seed| {
        Executor::new(0, seed).enter(|| {
            (0..4)
                .map(|_| GuestRuntime::thread_rng().random::<u64>())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(draw(1), draw(1));
    assert_ne!(draw(1), draw(2));
}

#[test]
fn spawn_blocking_runs_inline() {
    let mut rt = GuestRuntime::new(1);
    let v = rt.block_on(async { GuestRuntime::spawn_blocking(|| 7).await.unwrap() });
    assert_eq!(v, 7);
}

#[test]
fn rpc_call_times_out_and_matches_responses_by_id_and_peer() {
    use crate::frame::{self, Frame};
    use crate::runtime::rpc::{Rpc, RpcError};

    let exec = Executor::new(0, 0);
    let rpc = Rpc::new(3);
    let result = Rc::new(std::cell::RefCell::new(Vec::new()));
    for i in 0..2u8 {
        let (rpc, result) = (rpc.clone(), result.clone());
        exec.spawn(async move {
            let r = rpc.call(9, i, vec![i], Duration::from_millis(20)).await;
            result.borrow_mut().push((i, r));
        });
    }
    exec.run_until_idle();
    assert_eq!(rpc.pending(), 2);
    struct Capture(std::cell::RefCell<Vec<(u64, Vec<u8>)>>);
    impl crate::port::Host for Capture {
        fn send(&self, to: u64, payload: &[u8]) {
            self.0.borrow_mut().push((to, payload.to_vec()));
        }
        fn storage_get(&self, _: &[u8]) -> Option<Vec<u8>> {
            None
        }
        fn storage_write(
            &self,
            _: &[(Vec<u8>, Vec<u8>)],
            _: &[Vec<u8>],
            _: bool,
        ) -> Result<(), crate::DriverError> {
            Ok(())
        }
        fn storage_scan(&self, _: &[u8], _: &[u8], _: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
            vec![]
        }
        fn now_ms(&self) -> u64 {
            0
        }
        fn report_leadership(&self, _: crate::Leadership) {}
        fn completed(&self, _: u64, _: Result<u64, crate::DriverError>) {}
        fn log(&self, _: crate::LogLevel, _: &str) {}
        fn report_membership(&self, _: &[crate::Peer]) {}
    }
    let host = Capture(Default::default());
    rpc.flush(&host);
    let sent = host.0.take();
    assert_eq!(sent.len(), 1, "both requests batched into one payload");
    let frames = frame::decode(&sent[0].1).unwrap();
    let Frame::Request { id, kind: 0, .. } = frames[0] else {
        panic!("{frames:?}")
    };
    // A response from the wrong peer is ignored; the right one completes.
    let reply = frame::encode(&[Frame::Response { id, body: vec![42] }]);
    assert!(rpc.receive(8, &reply).unwrap().is_empty());
    assert!(rpc.receive(9, &reply).unwrap().is_empty());
    exec.run_until_idle();
    exec.advance_to_ms(20);
    exec.run_until_idle();
    let result = result.take();
    assert_eq!(result[0], (0, Ok(vec![42])));
    assert_eq!(
        result[1],
        (1, Err(RpcError::Timeout(Duration::from_millis(20))))
    );
    assert_eq!(rpc.pending(), 0);
}
