//! How the built-in drivers lay out their storage, read back without the
//! drivers: the durable high water each one stored, for `tsohost inspect`
//! and `tsohost recover`. Pure: a namespace's keys in, a value out.
//!
//! The layouts are the drivers' (kept in step with these sources):
//!
//! - `file` (`guest-drivers/sdk/src/register.rs`): `high-water` and
//!   `generation`, 8-byte big-endian `u64`s.
//! - `raft` (`guest-drivers/raft/src/store.rs`): `format` (`[1]`), `sm`
//!   (postcard `SmState`, whose first field is the applied high water),
//!   `log/<be64 index>` (postcard openraft entries; a normal entry is a
//!   `Persist { at_least, .. }`), `snapshot` (written synced together with
//!   `sm`, so never above it).
//! - `paxos` (`guest-drivers/paxos/src/store.rs`): `base` and `op/snapshot`
//!   (postcard `HwState`, first field the high water), `op/log/<be64>`
//!   (postcard `Command`: `Persist { at_least, .. }` or
//!   `Barrier { floor, .. }`).
//!
//! Why log entries count: a replicated driver's state machine holds what
//! this node applied, but an entry it only stored may have been committed
//! by a majority that is now gone, and timestamps served up to it. For a
//! recovery floor the only safe reading is the highest value any key
//! holds, committed or not.

use serde::Serialize;

/// A value this reader could not make sense of: the namespace is damaged
/// or written by a driver build with another layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key {key:?}: {what}")]
pub struct LayoutError {
    /// The key, within the namespace.
    pub key: String,
    pub what: String,
}

/// The drivers whose layout this module knows.
pub const KNOWN_DRIVERS: [&str; 3] = ["file", "raft", "paxos"];

/// What one known driver's namespace says about its high water.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredHighWater {
    /// The highest high water any key of the namespace records (Unix ms);
    /// 0 if none was ever persisted.
    pub high_water_ms: u64,
    /// Where the values came from, one line per kind of key.
    pub sources: Vec<Source>,
    /// The driver's layout version, where it stores one.
    pub format: Option<u64>,
}

/// One kind of key that records a high water, and the highest it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// e.g. `sm`, or `log/ (42 entries, 17..58)`.
    pub keys: String,
    pub high_water_ms: u64,
}

/// The high water stored in `entries` (keys relative to the namespace)
/// by driver `driver`; `None` if this module does not know the driver's
/// layout.
pub fn high_water(
    driver: &str,
    entries: &[(Vec<u8>, Vec<u8>)],
) -> Option<Result<StoredHighWater, LayoutError>> {
    Some(match driver {
        "file" => file(entries),
        "raft" => raft(entries),
        "paxos" => paxos(entries),
        _ => return None,
    })
}

fn file(entries: &[(Vec<u8>, Vec<u8>)]) -> Result<StoredHighWater, LayoutError> {
    let mut out = StoredHighWater {
        high_water_ms: 0,
        sources: Vec::new(),
        format: None,
    };
    if let Some(v) = get(entries, b"high-water") {
        let hw = be_u64(b"high-water", v)?;
        out.push("high-water", hw);
    }
    Ok(out)
}

/// The raft layout version this reader knows (`format` key).
const RAFT_FORMAT: u8 = 1;

fn raft(entries: &[(Vec<u8>, Vec<u8>)]) -> Result<StoredHighWater, LayoutError> {
    let mut out = StoredHighWater {
        high_water_ms: 0,
        sources: Vec::new(),
        format: None,
    };
    match get(entries, b"format") {
        None => {}
        Some([v]) if *v == RAFT_FORMAT => out.format = Some(u64::from(*v)),
        Some(other) => {
            return Err(err(
                b"format",
                format!(
                    "raft storage layout {other:?}; this tsohost reads layout [{RAFT_FORMAT}]: \
                     inspect it with the tsohost release that wrote it"
                ),
            ));
        }
    }
    if let Some(v) = get(entries, b"sm") {
        let hw = Postcard::new(b"sm", v).varint("the state machine's high water")?;
        out.push("sm", hw);
    }
    out.log(entries, b"log/", raft_entry)?;
    Ok(out)
}

/// An openraft entry: log id (`leader_id.term`, `leader_id.node_id`,
/// `index`), then the payload: 0 blank, 1 normal (`Command::Persist` = 0,
/// then `at_least`), 2 membership.
fn raft_entry(key: &[u8], v: &[u8]) -> Result<Option<u64>, LayoutError> {
    let mut p = Postcard::new(key, v);
    p.varint("the log id's term")?;
    p.varint("the log id's node")?;
    p.varint("the log id's index")?;
    match p.varint("the payload kind")? {
        0 | 2 => Ok(None),
        1 => match p.varint("the command kind")? {
            0 => Ok(Some(p.varint("a persist's at_least")?)),
            other => Err(err(key, format!("unknown raft command kind {other}"))),
        },
        other => Err(err(key, format!("unknown raft payload kind {other}"))),
    }
}

fn paxos(entries: &[(Vec<u8>, Vec<u8>)]) -> Result<StoredHighWater, LayoutError> {
    let mut out = StoredHighWater {
        high_water_ms: 0,
        sources: Vec::new(),
        format: None,
    };
    for key in [&b"base"[..], b"op/snapshot"] {
        if let Some(v) = get(entries, key) {
            let hw = Postcard::new(key, v).varint("the high water")?;
            out.push(&String::from_utf8_lossy(key), hw);
        }
    }
    out.log(entries, b"op/log/", |key, v| {
        let mut p = Postcard::new(key, v);
        match p.varint("the command kind")? {
            // Persist { at_least, .. } and Barrier { floor, .. }: both
            // raise the high water to their first field.
            0 | 1 => Ok(Some(p.varint("the command's value")?)),
            other => Err(err(key, format!("unknown paxos command kind {other}"))),
        }
    })?;
    Ok(out)
}

impl StoredHighWater {
    fn push(&mut self, keys: &str, hw: u64) {
        self.high_water_ms = self.high_water_ms.max(hw);
        self.sources.push(Source {
            keys: keys.to_string(),
            high_water_ms: hw,
        });
    }

    /// The highest value of the log entries under `prefix`
    /// (`prefix` + be64 index), read by `entry`.
    fn log(
        &mut self,
        entries: &[(Vec<u8>, Vec<u8>)],
        prefix: &[u8],
        entry: impl Fn(&[u8], &[u8]) -> Result<Option<u64>, LayoutError>,
    ) -> Result<(), LayoutError> {
        let (mut n, mut first, mut last, mut hw) = (0u64, u64::MAX, 0u64, None::<u64>);
        for (k, v) in entries.iter().filter(|(k, _)| k.starts_with(prefix)) {
            let index = <[u8; 8]>::try_from(&k[prefix.len()..])
                .map(u64::from_be_bytes)
                .map_err(|_| err(k, "a log key without an 8-byte index".into()))?;
            n += 1;
            first = first.min(index);
            last = last.max(index);
            if let Some(value) = entry(k, v)? {
                hw = Some(hw.map_or(value, |h| h.max(value)));
            }
        }
        if let Some(hw) = hw {
            let prefix = String::from_utf8_lossy(prefix);
            self.push(&format!("{prefix} ({n} entries, {first}..={last})"), hw);
        }
        Ok(())
    }
}

fn get<'a>(entries: &'a [(Vec<u8>, Vec<u8>)], key: &[u8]) -> Option<&'a [u8]> {
    entries
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_slice())
}

fn err(key: &[u8], what: String) -> LayoutError {
    LayoutError {
        key: String::from_utf8_lossy(key).into_owned(),
        what,
    }
}

fn be_u64(key: &[u8], v: &[u8]) -> Result<u64, LayoutError> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| err(key, format!("{} bytes, expected an 8-byte u64", v.len())))
}

/// A cursor over a postcard value: integers are LEB128 varints, enum
/// variants their index as a varint, struct fields in order.
struct Postcard<'a> {
    key: &'a [u8],
    bytes: &'a [u8],
}

impl<'a> Postcard<'a> {
    fn new(key: &'a [u8], bytes: &'a [u8]) -> Self {
        Postcard { key, bytes }
    }

    fn varint(&mut self, what: &str) -> Result<u64, LayoutError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&b, rest)) = self.bytes.split_first() else {
                return Err(err(self.key, format!("ends inside {what}")));
            };
            self.bytes = rest;
            let low = u64::from(b & 0x7f);
            if i == 9 && low > 1 {
                break;
            }
            value |= low << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(err(self.key, format!("{what} is not a postcard u64")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn kv(k: &[u8], v: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        (k.to_vec(), v)
    }

    fn log_key(prefix: &[u8], i: u64) -> Vec<u8> {
        [prefix, &i.to_be_bytes()].concat()
    }

    #[test]
    fn varints_round_trip_and_reject_overlong() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let bytes = varint(v);
            assert_eq!(Postcard::new(b"k", &bytes).varint("v"), Ok(v));
        }
        assert!(Postcard::new(b"k", &[0x80]).varint("v").is_err());
        assert!(Postcard::new(b"k", &[0xff; 11]).varint("v").is_err());
    }

    #[test]
    fn file_reads_its_register() {
        let e = vec![
            kv(b"generation", 3u64.to_be_bytes().to_vec()),
            kv(b"high-water", 1_700_000_000_123u64.to_be_bytes().to_vec()),
        ];
        let hw = high_water("file", &e).unwrap().unwrap();
        assert_eq!(hw.high_water_ms, 1_700_000_000_123);
        assert_eq!(high_water("file", &[]).unwrap().unwrap().high_water_ms, 0);
        let bad = vec![kv(b"high-water", vec![1, 2, 3])];
        let e = high_water("file", &bad).unwrap().unwrap_err();
        assert_eq!(e.key, "high-water");
    }

    /// A raft entry as postcard writes it: log id, then the payload.
    fn raft_persist(index: u64, at_least: u64) -> Vec<u8> {
        [
            varint(7),
            varint(2),
            varint(index),
            varint(1),
            varint(0),
            varint(at_least),
            varint(7),
            varint(2),
        ]
        .concat()
    }

    #[test]
    fn raft_takes_the_highest_of_state_machine_and_log() {
        let sm = [varint(5_000), varint(7), varint(2)].concat();
        let blank = [varint(7), varint(2), varint(10), varint(0)].concat();
        let e = vec![
            kv(b"format", vec![1]),
            kv(&log_key(b"log/", 10), blank),
            kv(&log_key(b"log/", 11), raft_persist(11, 6_000)),
            kv(&log_key(b"log/", 12), raft_persist(12, 9_000)),
            kv(b"sm", sm),
        ];
        let hw = high_water("raft", &e).unwrap().unwrap();
        assert_eq!(hw.high_water_ms, 9_000);
        assert_eq!(hw.format, Some(1));
        assert_eq!(hw.sources[0].high_water_ms, 5_000);
        assert!(hw.sources[1].keys.contains("3 entries, 10..=12"), "{hw:?}");
    }

    #[test]
    fn raft_refuses_another_layout_and_damaged_entries() {
        let e = vec![kv(b"format", vec![2])];
        assert_eq!(high_water("raft", &e).unwrap().unwrap_err().key, "format");
        let e = vec![kv(&log_key(b"log/", 1), vec![7, 2, 1, 9])];
        assert!(high_water("raft", &e).unwrap().is_err());
        let e = vec![kv(b"log/x", raft_persist(1, 1))];
        assert!(high_water("raft", &e).unwrap().is_err());
    }

    #[test]
    fn paxos_reads_base_snapshot_and_both_commands() {
        let e = vec![
            kv(b"base", [varint(100), varint(1), varint(1)].concat()),
            kv(
                &log_key(b"op/log/", 0),
                [varint(1), varint(4_000), varint(1), varint(1), varint(9)].concat(),
            ),
            kv(
                &log_key(b"op/log/", 1),
                [varint(0), varint(3_000), varint(1), varint(1), varint(10)].concat(),
            ),
            kv(
                b"op/snapshot",
                [varint(2_000), varint(1), varint(1)].concat(),
            ),
        ];
        let hw = high_water("paxos", &e).unwrap().unwrap();
        assert_eq!(hw.high_water_ms, 4_000);
        assert_eq!(hw.sources.len(), 3);
    }

    #[test]
    fn an_unknown_driver_is_not_guessed() {
        assert!(high_water("javascript-paxos", &[kv(b"hw", vec![0; 8])]).is_none());
    }
}
