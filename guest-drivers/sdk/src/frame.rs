//! Message framing between the drivers of a cluster: request/response frames
//! with ids, several per `host.send` payload.
//!
//! The host delivers opaque bytes and may lose, duplicate or reorder them, so
//! every frame is self-contained: a request carries the id its response must
//! echo and a protocol-defined `kind`; a response carries only the id. The
//! body is the protocol's own encoding. Batching several frames into one
//! payload matters because each host→guest call has a fixed cost (docs/architecture.md §9).
//!
//! Wire format (version 1), all integers LEB128 varints:
//! `payload := 0x01 frame*`,
//! `frame := 0x00 id kind len body` (request) `| 0x01 id len body` (response).
//! A decoder rejects anything else rather than guessing: the peer may run a
//! newer driver build.

use thiserror::Error;

/// The framing version this build writes and reads.
pub const VERSION: u8 = 1;

const TAG_REQUEST: u8 = 0;
const TAG_RESPONSE: u8 = 1;

/// One message between drivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A request the peer answers with a [`Frame::Response`] of the same id.
    Request {
        /// Chosen by the sender; unique among its outstanding requests.
        id: u64,
        /// What the body is, in the protocol's numbering.
        kind: u8,
        /// The protocol's encoding of the request.
        body: Vec<u8>,
    },
    /// The answer to the request `id` of the receiving node.
    Response {
        /// The id of the request answered.
        id: u64,
        /// The protocol's encoding of the response.
        body: Vec<u8>,
    },
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The payload is empty.
    #[error("empty payload")]
    Empty,
    /// The payload was framed by an unknown (newer) version.
    #[error("unsupported framing version {0}, this build reads {VERSION}")]
    Version(u8),
    /// A frame has an unknown tag.
    #[error("unknown frame tag {0}")]
    Tag(u8),
    /// The payload ends inside a frame.
    #[error("truncated frame")]
    Truncated,
    /// A varint is longer than 64 bits.
    #[error("varint overflow")]
    Overflow,
}

/// Encode `frames` into one payload for `host.send`.
pub fn encode(frames: &[Frame]) -> Vec<u8> {
    let size: usize = frames
        .iter()
        .map(|f| match f {
            Frame::Request { body, .. } | Frame::Response { body, .. } => body.len() + 22,
        })
        .sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(VERSION);
    for frame in frames {
        match frame {
            Frame::Request { id, kind, body } => {
                out.push(TAG_REQUEST);
                put_varint(&mut out, *id);
                out.push(*kind);
                put_varint(&mut out, body.len() as u64);
                out.extend_from_slice(body);
            }
            Frame::Response { id, body } => {
                out.push(TAG_RESPONSE);
                put_varint(&mut out, *id);
                put_varint(&mut out, body.len() as u64);
                out.extend_from_slice(body);
            }
        }
    }
    out
}

/// Decode a payload produced by [`encode`].
pub fn decode(payload: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let (&version, mut rest) = payload.split_first().ok_or(FrameError::Empty)?;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let mut frames = Vec::new();
    while let Some((&tag, tail)) = rest.split_first() {
        rest = tail;
        if tag != TAG_REQUEST && tag != TAG_RESPONSE {
            return Err(FrameError::Tag(tag));
        }
        let id = take_varint(&mut rest)?;
        let kind = match tag {
            TAG_REQUEST => Some(take_byte(&mut rest)?),
            _ => None,
        };
        let len = usize::try_from(take_varint(&mut rest)?).map_err(|_| FrameError::Truncated)?;
        if rest.len() < len {
            return Err(FrameError::Truncated);
        }
        let (body, tail) = rest.split_at(len);
        rest = tail;
        let body = body.to_vec();
        frames.push(match kind {
            Some(kind) => Frame::Request { id, kind, body },
            None => Frame::Response { id, body },
        });
    }
    Ok(frames)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_byte(rest: &mut &[u8]) -> Result<u8, FrameError> {
    let (&b, tail) = rest.split_first().ok_or(FrameError::Truncated)?;
    *rest = tail;
    Ok(b)
}

fn take_varint(rest: &mut &[u8]) -> Result<u64, FrameError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = take_byte(rest)?;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return Err(FrameError::Overflow);
        }
        v |= bits << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(FrameError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_batch() {
        let frames = vec![
            Frame::Request {
                id: u64::MAX,
                kind: 7,
                body: vec![1, 2, 3],
            },
            Frame::Response {
                id: 300,
                body: vec![],
            },
            Frame::Request {
                id: 0,
                kind: 0,
                body: vec![9; 1000],
            },
        ];
        assert_eq!(decode(&encode(&frames)).unwrap(), frames);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode(&[]), Err(FrameError::Empty));
        assert_eq!(decode(&[2]), Err(FrameError::Version(2)));
        assert_eq!(decode(&[1, 9]), Err(FrameError::Tag(9)));
        assert_eq!(decode(&[1, 1, 5, 4, 0]), Err(FrameError::Truncated));
        assert_eq!(decode(&[1, 1, 0xff]), Err(FrameError::Truncated));
        let mut long = vec![1, 1];
        long.extend([0xff; 10]);
        long.push(0);
        assert_eq!(decode(&long), Err(FrameError::Overflow));
    }
}
