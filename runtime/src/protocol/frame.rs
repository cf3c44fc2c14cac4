//! Kafka framing: every request and response is a 4-byte big-endian size
//! followed by that many bytes.
//!
//! [`check`] is the cheap "is a whole frame here?" test that runs before any
//! parsing; it also enforces `socket.request.max.bytes` (spec: PRO-1, PRO-2).

use bytes::{BufMut, BytesMut};

/// Size of the length prefix.
pub const LENGTH_BYTES: usize = 4;

/// The smallest request: api key, api version and correlation id.
pub const MIN_REQUEST_BYTES: usize = 8;

/// Why a frame cannot be accepted; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative or smaller than any request header.
    #[error("frame size {0} is too small for a request")]
    TooSmall(i32),
    /// The size prefix exceeds `socket.request.max.bytes`.
    #[error("frame size {size} exceeds socket.request.max.bytes ({max})")]
    TooLarge {
        /// Declared size.
        size: i32,
        /// Configured limit.
        max: i32,
    },
}

/// Returns the body length of the frame at the front of `buf` once all of it
/// has arrived, `Ok(None)` while more bytes are needed, or an error as soon
/// as the size prefix alone proves the frame unacceptable (spec: PRO-1, PRO-2).
pub fn check(buf: &[u8], max_bytes: i32) -> Result<Option<usize>, FrameError> {
    if buf.len() < LENGTH_BYTES {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < MIN_REQUEST_BYTES as i32 {
        return Err(FrameError::TooSmall(size));
    }
    if size > max_bytes {
        return Err(FrameError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    let size = size as usize;
    if buf.len() - LENGTH_BYTES < size {
        return Ok(None);
    }
    Ok(Some(size))
}

/// Starts a response frame: reserves the size prefix and writes the response
/// header (v0: correlation id; v1: plus an empty tagged-field section).
/// Finish it with [`finish_response`].
pub fn begin_response(out: &mut BytesMut, correlation_id: i32, header_version: i16) -> usize {
    let start = out.len();
    out.put_i32(0);
    out.put_i32(correlation_id);
    if header_version >= 1 {
        out.put_u8(0);
    }
    start
}

/// Patches the size prefix of the frame begun at `start`.
pub fn finish_response(out: &mut BytesMut, start: usize) {
    let size = (out.len() - start - LENGTH_BYTES) as i32;
    out[start..start + LENGTH_BYTES].copy_from_slice(&size.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: PRO-1, PRO-2
    #[test]
    fn whole_frame_check() {
        assert_eq!(check(&[0, 0], 100), Ok(None));
        assert_eq!(check(&[0, 0, 0, 8, 1, 2, 3], 100), Ok(None));
        assert_eq!(
            check(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 9], 100),
            Ok(Some(8))
        );
        assert_eq!(check(&[0, 0, 0, 3], 100), Err(FrameError::TooSmall(3)));
        assert_eq!(
            check(&[0xff, 0xff, 0xff, 0xff], 100),
            Err(FrameError::TooSmall(-1))
        );
        assert_eq!(
            check(&[0, 0, 0, 101], 100),
            Err(FrameError::TooLarge {
                size: 101,
                max: 100
            })
        );
    }

    #[test]
    fn response_framing() {
        let mut out = BytesMut::new();
        let s = begin_response(&mut out, 7, 1);
        out.put_u8(0xaa);
        finish_response(&mut out, s);
        assert_eq!(&out[..], &[0, 0, 0, 6, 0, 0, 0, 7, 0, 0xaa]);
    }
}
