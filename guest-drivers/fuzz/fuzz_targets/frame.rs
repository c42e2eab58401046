//! The SDK's frame decoder (`tsohost_guest_sdk::frame::decode`) on
//! arbitrary payloads: it returns an error or frames, never panics, and
//! what it accepts re-encodes to frames that decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsohost_guest_sdk::frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frames) = frame::decode(data) {
        let again = frame::encode(&frames);
        assert_eq!(frame::decode(&again).as_ref(), Ok(&frames));
        assert!(
            again.len() <= data.len(),
            "re-encoding grew: varints are minimal"
        );
    }
});
