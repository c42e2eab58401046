//! The actor's queue: control commands (from the node) and peer messages
//! (from the network) with different guarantees.
//!
//! Control commands are few (the coordinator has a handful in flight) and
//! must never be lost, so their queue is unbounded. Peer messages may arrive
//! faster than the guest handles them; their queue is bounded and a message
//! that does not fit is dropped — consensus protocols tolerate loss, and the
//! host's memory stays bounded (docs/architecture.md §6).

use super::protocol::Command;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// What the actor takes out of the mailbox.
pub enum Item {
    Control(Command),
    /// Every queued peer message, oldest first.
    Messages(Vec<(u64, Vec<u8>)>),
}

#[derive(Default)]
struct Queues {
    control: VecDeque<Command>,
    messages: VecDeque<(u64, Vec<u8>)>,
}

pub struct Mailbox {
    queues: Mutex<Queues>,
    ready: Condvar,
    max_messages: usize,
}

impl Mailbox {
    pub fn new(max_messages: usize) -> Mailbox {
        Mailbox {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
            max_messages,
        }
    }

    pub fn push_control(&self, command: Command) {
        self.queues.lock().unwrap().control.push_back(command);
        self.ready.notify_one();
    }

    /// Drop a `Shutdown` left behind by an actor that ended without taking
    /// it, so that the next actor does not stop at once.
    pub fn forget_shutdown(&self) {
        self.queues
            .lock()
            .unwrap()
            .control
            .retain(|c| !matches!(c, Command::Shutdown));
    }

    /// Queue a [`Command::Stats`] in place of one still queued (whose asker
    /// gets no answer): scrapes while no actor runs leave one, not a pile.
    pub fn push_stats(&self, command: Command) {
        let mut q = self.queues.lock().unwrap();
        q.control.retain(|c| !matches!(c, Command::Stats { .. }));
        q.control.push_back(command);
        drop(q);
        self.ready.notify_one();
    }

    /// Queue a peer message; false (and dropped) when the queue is full.
    pub fn push_message(&self, from: u64, payload: Vec<u8>) -> bool {
        let mut q = self.queues.lock().unwrap();
        if q.messages.len() >= self.max_messages {
            return false;
        }
        q.messages.push_back((from, payload));
        drop(q);
        self.ready.notify_one();
        true
    }

    /// The next item, control first; `None` at `deadline`.
    pub fn recv_until(&self, deadline: Instant) -> Option<Item> {
        let mut q = self.queues.lock().unwrap();
        loop {
            if let Some(command) = q.control.pop_front() {
                return Some(Item::Control(command));
            }
            if !q.messages.is_empty() {
                return Some(Item::Messages(q.messages.drain(..).collect()));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            q = self.ready.wait_timeout(q, deadline - now).unwrap().0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn control_first_messages_bounded() {
        let m = Mailbox::new(2);
        assert!(m.push_message(1, vec![1]));
        assert!(m.push_message(1, vec![2]));
        assert!(!m.push_message(1, vec![3]), "full");
        m.push_control(Command::Shutdown);
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(matches!(
            m.recv_until(soon),
            Some(Item::Control(Command::Shutdown))
        ));
        match m.recv_until(soon) {
            Some(Item::Messages(v)) => assert_eq!(v, vec![(1, vec![1]), (1, vec![2])]),
            _ => panic!("messages"),
        }
        assert!(
            m.recv_until(Instant::now() + Duration::from_millis(5))
                .is_none()
        );
    }

    #[test]
    fn one_stats_question_waits_at_a_time() {
        let m = Mailbox::new(2);
        let (first, mut first_answer) = tokio::sync::oneshot::channel();
        let (second, _second_answer) = tokio::sync::oneshot::channel();
        m.push_stats(Command::Stats { reply: first });
        m.push_control(Command::Shutdown);
        m.push_stats(Command::Stats { reply: second });
        assert!(
            first_answer
                .try_recv()
                .is_err_and(|e| e == tokio::sync::oneshot::error::TryRecvError::Closed),
            "the replaced question is dropped"
        );
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(matches!(
            m.recv_until(soon),
            Some(Item::Control(Command::Shutdown))
        ));
        assert!(matches!(
            m.recv_until(soon),
            Some(Item::Control(Command::Stats { .. }))
        ));
        assert!(m.recv_until(soon).is_none());
    }
}
