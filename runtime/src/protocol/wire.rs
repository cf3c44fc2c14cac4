//! Bounds-checked readers for request bodies.
//!
//! Every request is decoded through [`Reader`]: each read checks the bytes
//! left, and an array count larger than the bytes left in the frame is
//! rejected before anything is allocated, so a hostile count cannot make the
//! broker reserve gigabytes (spec: PRO-5). Byte fields are returned as
//! zero-copy slices of the frame.

use bytes::Bytes;

/// Why a request body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body ended in the middle of a field.
    #[error("request truncated while reading {0}")]
    Truncated(&'static str),
    /// A length or count is negative (other than the null marker) or larger
    /// than the rest of the frame.
    #[error("implausible length {len} for {what}")]
    BadLength {
        /// Which field.
        what: &'static str,
        /// The length as read.
        len: i64,
    },
    /// A string field is not UTF-8.
    #[error("string field {0} is not UTF-8")]
    Utf8(&'static str),
    /// A varint runs past five bytes.
    #[error("malformed varint in {0}")]
    Varint(&'static str),
}

/// A cursor over one request body.
#[derive(Debug)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
    /// Whether the version being read uses the flexible (compact) encoding.
    pub flexible: bool,
}

impl Reader {
    /// Reads `buf`; `flexible` selects compact strings/arrays and tagged fields.
    pub fn new(buf: Bytes, flexible: bool) -> Self {
        Self {
            buf,
            pos: 0,
            flexible,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// An `int8`.
    pub fn i8(&mut self, what: &'static str) -> Result<i8, DecodeError> {
        Ok(self.take(1, what)?[0] as i8)
    }
    /// A `boolean`.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        Ok(self.i8(what)? != 0)
    }
    /// An `int16`.
    pub fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    /// An `int32`.
    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// An `int64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    /// A `uuid` (16 raw bytes).
    pub fn uuid(&mut self, what: &'static str) -> Result<[u8; 16], DecodeError> {
        let b = self.take(16, what)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(a)
    }
    /// An `unsigned varint` (at most five bytes).
    pub fn uvarint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.take(1, what)?[0];
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Varint(what))
    }

    /// Reads a length prefix: `int16`/`int32` or compact `uvarint - 1`.
    /// Returns `None` for null; checks the length against the bytes left.
    fn length(&mut self, what: &'static str, wide: bool) -> Result<Option<usize>, DecodeError> {
        let len: i64 = if self.flexible {
            i64::from(self.uvarint(what)?) - 1
        } else if wide {
            i64::from(self.i32(what)?)
        } else {
            i64::from(self.i16(what)?)
        };
        if len == -1 {
            return Ok(None);
        }
        if len < 0 || len as u64 > self.remaining() as u64 {
            return Err(DecodeError::BadLength { what, len });
        }
        Ok(Some(len as usize))
    }

    /// A nullable string.
    pub fn nullable_str(&mut self, what: &'static str) -> Result<Option<&str>, DecodeError> {
        match self.length(what, false)? {
            None => Ok(None),
            Some(n) => {
                let b = self.take(n, what)?;
                std::str::from_utf8(b)
                    .map(Some)
                    .map_err(|_| DecodeError::Utf8(what))
            }
        }
    }
    /// A non-null string.
    pub fn str(&mut self, what: &'static str) -> Result<&str, DecodeError> {
        self.nullable_str(what)?
            .ok_or(DecodeError::BadLength { what, len: -1 })
    }
    /// A nullable `bytes`/`records` field as a zero-copy slice of the frame.
    pub fn nullable_bytes(&mut self, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
        match self.length(what, true)? {
            None => Ok(None),
            Some(n) => {
                let start = self.pos;
                self.take(n, what)?;
                Ok(Some(self.buf.slice(start..start + n)))
            }
        }
    }
    /// An array count (null arrays read as `None`). The count is at most the
    /// bytes left: every element takes at least one byte (spec: PRO-5).
    pub fn array_len(&mut self, what: &'static str) -> Result<Option<usize>, DecodeError> {
        self.length(what, true)
    }
    /// A non-null array count.
    pub fn array(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        self.array_len(what)?
            .ok_or(DecodeError::BadLength { what, len: -1 })
    }
    /// Skips a tagged-field section (flexible versions only; a no-op otherwise).
    pub fn tagged_fields(&mut self) -> Result<(), DecodeError> {
        if !self.flexible {
            return Ok(());
        }
        let n = self.uvarint("tagged field count")?;
        if n as usize > self.remaining() {
            return Err(DecodeError::BadLength {
                what: "tagged field count",
                len: i64::from(n),
            });
        }
        for _ in 0..n {
            self.uvarint("tag")?;
            let size = self.uvarint("tagged field size")? as usize;
            self.take(size, "tagged field")?;
        }
        Ok(())
    }
    /// Ends decoding. Bytes after the last field are ignored, as Kafka
    /// ignores them (spec: PRO-4): librdkafka 2.x sends Metadata v12 for
    /// "all topics" with three stray bytes after the body.
    pub fn finish(&self) -> Result<(), DecodeError> {
        let n = self.remaining();
        if n > 0 {
            tracing::debug!(bytes = n, "ignoring bytes after the last request field");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: PRO-5
    #[test]
    fn absurd_counts_are_rejected_before_allocating() {
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0]), false);
        assert!(matches!(
            r.array("topics"),
            Err(DecodeError::BadLength {
                len: 2147483647,
                ..
            })
        ));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]), false);
        assert_eq!(r.array_len("topics"), Ok(None));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f]), true);
        assert!(matches!(
            r.array("topics"),
            Err(DecodeError::BadLength { .. })
        ));
        let mut r = Reader::new(Bytes::from_static(&[0x80, 0x80, 0x80, 0x80, 0x80]), true);
        assert_eq!(r.uvarint("v"), Err(DecodeError::Varint("v")));
    }

    #[test]
    fn strings_and_compact_strings() {
        let mut r = Reader::new(Bytes::from_static(b"\x00\x03abc\xff\xff"), false);
        assert_eq!(r.str("s").unwrap(), "abc");
        assert_eq!(r.nullable_str("s").unwrap(), None);
        r.finish().unwrap();
        let mut r = Reader::new(Bytes::from_static(b"\x04abc\x00\x00"), true);
        assert_eq!(r.str("s").unwrap(), "abc");
        assert_eq!(r.nullable_str("s").unwrap(), None);
        r.tagged_fields().unwrap();
        assert_eq!(r.finish(), Ok(()));
        let mut r = Reader::new(Bytes::from_static(b"\x00\x05ab"), false);
        assert!(r.str("s").is_err());
    }
}

/// Writers for the legacy (non-flexible) versions that the `kafka-protocol`
/// crate no longer encodes (it follows Kafka 4.x, which removed them).
pub mod legacy {
    use bytes::{BufMut, BytesMut};

    /// An `int16`-length string.
    pub fn put_str(out: &mut BytesMut, s: &str) {
        let len = s.len().min(i16::MAX as usize);
        out.put_i16(len as i16);
        out.put_slice(&s.as_bytes()[..len]);
    }
    /// A nullable `int16`-length string.
    pub fn put_nullable_str(out: &mut BytesMut, s: Option<&str>) {
        match s {
            Some(s) => put_str(out, s),
            None => out.put_i16(-1),
        }
    }
    /// An array count.
    pub fn put_len(out: &mut BytesMut, n: usize) {
        out.put_i32(n.min(i32::MAX as usize) as i32);
    }
}
