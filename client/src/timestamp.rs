//! The 64-bit timestamp layout: 46 bits of Unix milliseconds, 18 logical bits
//! (the same as TiKV PD and tsoracle, so tools interoperate).

use serde::Serialize;

/// Bits of the logical counter.
pub const LOGICAL_BITS: u32 = 18;
/// Logical values per millisecond; also the largest batch one request may ask
/// for, so that a batch never spans more than two milliseconds.
pub const LOGICAL_PER_MS: u64 = 1 << LOGICAL_BITS;
/// The largest physical part a timestamp can carry.
pub const MAX_PHYSICAL_MS: u64 = (1 << 46) - 1;

/// A timestamp, ordered as its 64-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The first timestamp of millisecond `physical_ms`.
    pub const fn at_ms(physical_ms: u64) -> Timestamp {
        Timestamp(physical_ms << LOGICAL_BITS)
    }

    /// The physical part: Unix milliseconds of the serving leader's clock
    /// (or above it, if the leader had to keep the sequence increasing while
    /// its clock stood still or went back). Not a precise wall-clock reading.
    pub const fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The logical part: a counter that orders timestamps within one
    /// millisecond, from 0 to [`LOGICAL_PER_MS`] - 1.
    pub const fn logical(self) -> u64 {
        self.0 & (LOGICAL_PER_MS - 1)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The JSON shape of a granted range `[timestamp, timestamp + count)`.
///
/// 64-bit values are decimal strings: JSON numbers lose precision above 2^53.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RangeJson {
    /// The first timestamp of the range.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[0-9]+$", example = "470863464773976064")
    )]
    pub timestamp: String,
    /// How many consecutive values, starting at `timestamp`, are the caller's.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 262144))]
    pub count: u64,
    /// `timestamp`'s physical part (Unix ms).
    pub physical_ms: u64,
    /// `timestamp`'s logical part.
    pub logical: u64,
}

impl RangeJson {
    /// The answer for a grant of `count` values from `first`; the physical
    /// and logical parts are derived from `first`, so they always agree with
    /// `timestamp`.
    pub fn new(first: Timestamp, count: u64) -> RangeJson {
        RangeJson {
            timestamp: first.0.to_string(),
            count,
            physical_ms: first.physical_ms(),
            logical: first.logical(),
        }
    }

    /// The first timestamp, parsed back.
    pub fn first(&self) -> Option<Timestamp> {
        self.timestamp.parse().ok().map(Timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips() {
        let ts = Timestamp(Timestamp::at_ms(1_700_000_000_123).0 + 77);
        assert_eq!(ts.physical_ms(), 1_700_000_000_123);
        assert_eq!(ts.logical(), 77);
        assert_eq!(
            Timestamp::at_ms(MAX_PHYSICAL_MS).physical_ms(),
            MAX_PHYSICAL_MS
        );
    }

    #[test]
    fn json_keeps_all_64_bits() {
        let ts = Timestamp(u64::MAX - 3);
        let json = RangeJson::new(ts, 2);
        assert_eq!(json.first(), Some(ts));
        assert_eq!(json.logical, ts.logical());
    }
}
