//! Request headers v0–v2 (spec: PRO-3).
//!
//! | version | fields |
//! |---|---|
//! | 0 | api_key i16, api_version i16, correlation_id i32 |
//! | 1 | + client_id nullable string (int16 length) |
//! | 2 | + tagged fields (the client id stays a non-compact string) |

use bytes::Bytes;

use super::wire::{DecodeError, Reader};

/// A decoded request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// Which API.
    pub api_key: i16,
    /// Which version of it.
    pub api_version: i16,
    /// Echoed in the response so the client can match it.
    pub correlation_id: i32,
    /// The client's self-reported id (header v1+).
    pub client_id: Option<String>,
}

/// Reads the api key, version and correlation id (the part common to every
/// header version) without consuming anything.
pub fn peek_fixed(frame: &[u8]) -> Option<(i16, i16, i32)> {
    if frame.len() < 8 {
        return None;
    }
    Some((
        i16::from_be_bytes([frame[0], frame[1]]),
        i16::from_be_bytes([frame[2], frame[3]]),
        i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    ))
}

/// Decodes a header of `header_version` from the front of `frame`; returns it
/// with the body that follows (a zero-copy slice).
pub fn decode(frame: Bytes, header_version: i16) -> Result<(RequestHeader, Bytes), DecodeError> {
    let mut r = Reader::new(frame.clone(), false);
    let api_key = r.i16("api_key")?;
    let api_version = r.i16("api_version")?;
    let correlation_id = r.i32("correlation_id")?;
    let client_id = if header_version >= 1 {
        r.nullable_str("client_id")?.map(str::to_owned)
    } else {
        None
    };
    if header_version >= 2 {
        r.flexible = true;
        r.tagged_fields()?;
    }
    let used = frame.len() - r.remaining();
    Ok((
        RequestHeader {
            api_key,
            api_version,
            correlation_id,
            client_id,
        },
        frame.slice(used..),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: PRO-3
    #[test]
    fn header_versions() {
        let v0 = Bytes::from_static(&[0, 18, 0, 0, 0, 0, 0, 5, 0xee]);
        let (h, body) = decode(v0, 0).unwrap();
        assert_eq!((h.api_key, h.api_version, h.correlation_id), (18, 0, 5));
        assert_eq!(&body[..], &[0xee]);

        let v1 = Bytes::from_static(b"\x00\x03\x00\x01\x00\x00\x00\x09\x00\x02ab\x01");
        let (h, body) = decode(v1, 1).unwrap();
        assert_eq!(h.client_id.as_deref(), Some("ab"));
        assert_eq!(&body[..], b"\x01");

        let v2 = Bytes::from_static(b"\x00\x12\x00\x03\x00\x00\x00\x01\xff\xff\x01\x07\x02xy\x00");
        let (h, body) = decode(v2, 2).unwrap();
        assert_eq!(h.client_id, None);
        assert_eq!(&body[..], b"\x00");

        let truncated = Bytes::from_static(b"\x00\x03\x00\x01\x00\x00\x00\x09\x00\x09ab");
        assert!(decode(truncated, 1).is_err());
    }
}
