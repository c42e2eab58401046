//! Typed values over a host's key-value storage.
//!
//! Values written by these helpers are fixed-width big-endian, so a new build
//! of a driver reads what an old build wrote.

use crate::DriverError;
use crate::port::Host;

/// The `u64` stored under `key`, if any. A value of the wrong width is
/// reported rather than misread: storage is the only copy of driver state.
pub fn get_u64(host: &dyn Host, key: &[u8]) -> Result<Option<u64>, DriverError> {
    match host.storage_get(key) {
        None => Ok(None),
        Some(bytes) => decode_u64(&bytes).map(Some).ok_or_else(|| {
            DriverError::Storage(format!(
                "key {:?} holds {} bytes, expected an 8-byte u64: storage is corrupt",
                String::from_utf8_lossy(key),
                bytes.len()
            ))
        }),
    }
}

/// Write several `u64` values atomically and durably (synced) before
/// returning.
pub fn put_u64s_synced(host: &dyn Host, values: &[(&[u8], u64)]) -> Result<(), DriverError> {
    let puts: Vec<(Vec<u8>, Vec<u8>)> = values
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_be_bytes().to_vec()))
        .collect();
    host.storage_write(&puts, &[], true)
}

/// Decode a big-endian `u64` of exactly eight bytes.
pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}
