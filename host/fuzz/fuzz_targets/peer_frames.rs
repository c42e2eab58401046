//! The peer network's decoders (`tsohost::peer`): what an accepting node
//! reads from a connection before authentication (`read_greeting`,
//! `read_url`) and after it (`read_frame`, the length-prefixed, MACed
//! frames).
//!
//! Input: `mode: u8`, then
//! - mode even: raw bytes read as a greeting then a URL (what anyone who
//!   can connect may send);
//! - mode odd: chunks `flags: u8, len: u16 LE, payload` (plus, with flag 1,
//!   a u32 BE length to announce instead of the true one; with flag 2, a
//!   16-byte tag to send instead of the valid one), written as a peer that
//!   holds the session key would, then read back with `read_frame` until
//!   it fails. Every frame written truthfully before the first lie must be
//!   read back unchanged; a frame with a wrong tag must not be.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tsohost::metrics::Metrics;
use tsohost::peer::auth::{Secret, TAG, Transcript};
use tsohost::peer::{MAX_FRAME, read_frame, read_greeting, read_url};

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime")
    })
}

fn transcript() -> Transcript {
    Transcript {
        dialer: 2,
        acceptor: 1,
        nonce_d: [7; 16],
        nonce_a: [9; 16],
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let metrics = Metrics::default();
    rt().block_on(async {
        if mode & 1 == 0 {
            let mut r = rest;
            if let Ok((_id, _nonce)) = read_greeting(&mut r).await
                && let Ok(url) = read_url(&mut r).await
            {
                assert!(url.len() <= tsohost::peer::auth::MAX_URL);
            }
            return;
        }
        let secret = Secret::new(b"fuzzing-cluster-secret").expect("16 bytes or more");
        let mut sealer = transcript().session(&secret);
        let mut stream = Vec::new();
        // The payloads a reader must return, in order, before the first
        // chunk that lies (about its length or its tag).
        let mut expected: Vec<Vec<u8>> = Vec::new();
        let mut honest = true;
        let mut input = rest;
        while let [flags, l0, l1, tail @ ..] = input {
            let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(tail.len());
            let (payload, tail) = tail.split_at(len);
            input = tail;
            let announced = if flags & 1 != 0 {
                let n = input.len().min(4);
                let mut b = [0u8; 4];
                b[..n].copy_from_slice(&input[..n]);
                input = &input[n..];
                u32::from_be_bytes(b)
            } else {
                len as u32
            };
            let tag = sealer.seal(payload);
            let sent_tag = if flags & 2 != 0 {
                let n = input.len().min(TAG);
                let mut t = [0u8; TAG];
                t[..n].copy_from_slice(&input[..n]);
                input = &input[n..];
                t
            } else {
                tag
            };
            stream.extend_from_slice(&announced.to_be_bytes());
            stream.extend_from_slice(payload);
            stream.extend_from_slice(&sent_tag);
            if announced as usize != len || sent_tag != tag {
                honest = false;
            }
            if honest {
                expected.push(payload.to_vec());
            }
        }
        let mut opener = transcript().session(&secret);
        let mut r = stream.as_slice();
        let mut got = Vec::new();
        while let Ok(payload) = read_frame(&mut r, 2, &mut opener, &metrics).await {
            assert!(payload.len() <= MAX_FRAME);
            got.push(payload);
        }
        // Past the honest prefix, only a frame whose forged tag happens to
        // be the valid one (or a lie that still parses as valid frames) can
        // be read, which the checks below allow for.
        assert!(
            got.len() >= expected.len(),
            "honest frames lost: {} of {}",
            got.len(),
            expected.len()
        );
        assert_eq!(&got[..expected.len()], &expected[..]);
    });
});
