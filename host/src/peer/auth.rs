//! Peer authentication: a mutual challenge-response on the cluster secret,
//! then a MAC on every frame.
//!
//! Handshake (the dialer sends, the acceptor only receives data):
//! 1. dialer → `HELLO`: magic, dialer id, nonce_d, dialer URL;
//! 2. acceptor → `WELCOME`: magic, acceptor id, nonce_a,
//!    `mac(secret; "accept", ids, nonces)`, acceptor URL;
//! 3. dialer → `mac(secret; "dial", ids, nonces)`.
//!
//! Both sides prove the secret without revealing it, fresh nonces make every
//! session key new, and each frame carries `mac(session; seq, payload)`, so
//! a frame cannot be forged, altered, replayed or reordered.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const MAGIC: &[u8; 9] = b"TSOHPEER1";
pub const NONCE: usize = 16;
/// Truncated HMAC-SHA256: 128 bits.
pub const TAG: usize = 16;
pub const MAX_URL: usize = 1024;

pub type Nonce = [u8; NONCE];
pub type Tag = [u8; TAG];

/// The cluster secret. Never printed.
#[derive(Clone)]
pub struct Secret(std::sync::Arc<[u8]>);

impl Secret {
    /// At least 16 bytes, so that a typo'd empty file is not a secret.
    pub fn new(bytes: &[u8]) -> Option<Secret> {
        (bytes.len() >= 16).then(|| Secret(bytes.into()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn tag(full: [u8; 32]) -> Tag {
    full[..TAG].try_into().unwrap()
}

/// Everything both sides bind a handshake to.
pub struct Transcript {
    pub dialer: u64,
    pub acceptor: u64,
    pub nonce_d: Nonce,
    pub nonce_a: Nonce,
}

impl Transcript {
    fn mac(&self, secret: &Secret, label: &[u8]) -> [u8; 32] {
        hmac(
            &secret.0,
            &[
                label,
                &self.dialer.to_be_bytes(),
                &self.acceptor.to_be_bytes(),
                &self.nonce_d,
                &self.nonce_a,
            ],
        )
    }

    pub fn accept_tag(&self, secret: &Secret) -> Tag {
        tag(self.mac(secret, b"accept"))
    }

    pub fn dial_tag(&self, secret: &Secret) -> Tag {
        tag(self.mac(secret, b"dial"))
    }

    pub fn session(&self, secret: &Secret) -> Session {
        Session {
            key: self.mac(secret, b"session"),
            seq: 0,
        }
    }
}

/// One direction of an authenticated connection.
pub struct Session {
    key: [u8; 32],
    seq: u64,
}

impl Session {
    /// The tag of the next frame to send.
    pub fn seal(&mut self, payload: &[u8]) -> Tag {
        let t = tag(hmac(&self.key, &[&self.seq.to_be_bytes(), payload]));
        self.seq += 1;
        t
    }

    /// Whether `payload` is the next frame of this session.
    pub fn open(&mut self, payload: &[u8], received: &Tag) -> bool {
        let expected = tag(hmac(&self.key, &[&self.seq.to_be_bytes(), payload]));
        let ok = constant_time_eq(&expected, received);
        if ok {
            self.seq += 1;
        }
        ok
    }
}

/// Tag comparison that does not leak where the first difference is.
pub fn constant_time_eq(a: &Tag, b: &Tag) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn nonce() -> Nonce {
    let mut n = [0; NONCE];
    getrandom::fill(&mut n).expect("the OS random source");
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript() -> Transcript {
        Transcript {
            dialer: 1,
            acceptor: 2,
            nonce_d: [1; NONCE],
            nonce_a: [2; NONCE],
        }
    }

    #[test]
    fn frames_open_in_order_only() {
        let secret = Secret::new(b"0123456789abcdef").unwrap();
        let mut tx = transcript().session(&secret);
        let mut rx = transcript().session(&secret);
        let t0 = tx.seal(b"zero");
        let t1 = tx.seal(b"one");
        assert!(!rx.open(b"one", &t1), "out of order");
        assert!(!rx.open(b"zerO", &t0), "altered");
        assert!(rx.open(b"zero", &t0));
        assert!(!rx.open(b"zero", &t0), "replayed");
        assert!(rx.open(b"one", &t1));
    }

    #[test]
    fn a_different_secret_or_transcript_gives_different_tags() {
        let a = Secret::new(b"0123456789abcdef").unwrap();
        let b = Secret::new(b"0123456789abcdeF").unwrap();
        assert_ne!(transcript().accept_tag(&a), transcript().accept_tag(&b));
        assert_ne!(transcript().accept_tag(&a), transcript().dial_tag(&a));
        let mut other = transcript();
        other.dialer = 3;
        assert_ne!(transcript().dial_tag(&a), other.dial_tag(&a));
        assert!(Secret::new(b"short").is_none());
    }
}
