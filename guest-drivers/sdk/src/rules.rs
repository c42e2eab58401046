//! The checks every driver applies to a persist, in one place so that all
//! Rust drivers answer a bad request with the same error.

use crate::{DriverError, Epoch};

/// The largest physical time, in ms, a timestamp can carry: 46 bits.
pub const MAX_PHYSICAL_MS: u64 = (1 << 46) - 1;

/// `at-least` must fit the 46-bit physical part of a timestamp.
pub fn check_range(at_least: u64) -> Result<(), DriverError> {
    if at_least > MAX_PHYSICAL_MS {
        Err(DriverError::OutOfRange(at_least))
    } else {
        Ok(())
    }
}

/// A request from an epoch older than `accepted` is fenced: it comes from a
/// leader that has been superseded and must not move the high water.
pub fn check_epoch(request: Epoch, accepted: Epoch) -> Result<(), DriverError> {
    if request < accepted {
        Err(DriverError::Fenced(accepted))
    } else {
        Ok(())
    }
}

/// The epoch the empty cluster starts from; every real epoch is greater.
pub const ZERO_EPOCH: Epoch = Epoch { hi: 0, lo: 0 };

/// Reject options this driver does not know, so a typo on the command line
/// is an error rather than a silently ignored setting.
pub fn check_options(cfg: &crate::Config, known: &[&str]) -> Result<(), DriverError> {
    match cfg
        .options
        .iter()
        .find(|(k, _)| !known.contains(&k.as_str()))
    {
        None => Ok(()),
        Some((k, _)) => Err(DriverError::InvalidConfig(format!(
            "unknown driver option `{k}`; this driver knows {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))),
    }
}

/// The options of `cfg`, all of which must be known and whole numbers (as
/// the timing options of replicated drivers are), as `(key, value)` pairs.
pub fn numeric_options<'a>(
    cfg: &'a crate::Config,
    known: &[&str],
) -> Result<Vec<(&'a str, u64)>, DriverError> {
    check_options(cfg, known)?;
    cfg.options
        .iter()
        .map(|(key, value)| {
            let n = value.parse().map_err(|_| {
                DriverError::InvalidConfig(format!(
                    "option `{key}`: `{value}` is not a non-negative integer"
                ))
            })?;
            Ok((key.as_str(), n))
        })
        .collect()
}
