//! The legacy message format, magic 0 and 1 (spec: STO-11, STO-20).
//!
//! ```text
//! offset  i64      ┐ log overhead (STO-10)
//! size    i32      ┘ bytes after this field
//! crc     u32      CRC32 (IEEE) of magic .. end
//! magic   i8       0 or 1
//! attrs   i8       bits 0-2 codec, bit 3 timestamp type (v1)
//! ts      i64      v1 only
//! key     i32 length (-1 = null) + bytes
//! value   i32 length (-1 = null) + bytes
//! ```
//!
//! A compressed message (a *wrapper*) carries in its value a compressed
//! message set of uncompressed inner messages of the same magic. v1 inner
//! offsets are relative (0..n-1) and the wrapper's offset is the absolute
//! offset of the last inner message; v0 inner offsets are absolute.

use super::compression::Codec;
use super::{LOG_OVERHEAD, MAGIC_OFFSET, RecordError, TimestampType, be_i32, be_i64, parse_entry};

/// Position of the CRC within an entry.
pub const CRC_OFFSET: usize = 12;
/// Position of the attributes byte within an entry.
pub const ATTRIBUTES_OFFSET: usize = 17;
/// Position of the v1 timestamp within an entry.
pub const TIMESTAMP_OFFSET: usize = 18;

/// One legacy message, borrowed from the bytes it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The offset field: absolute, or relative for v1 inner messages.
    pub offset: i64,
    /// 0 or 1.
    pub magic: u8,
    /// The attributes byte.
    pub attributes: u8,
    /// The v1 timestamp; [`super::NO_TIMESTAMP`] for v0.
    pub timestamp: i64,
    /// The key, `None` when null.
    pub key: Option<&'a [u8]>,
    /// The value, `None` when null (a wrapper always has one).
    pub value: Option<&'a [u8]>,
    /// Bytes of the whole entry, log overhead included.
    pub size: usize,
}

impl Message<'_> {
    /// The codec in the attributes (spec: STO-16).
    pub fn codec(&self) -> Result<Codec, RecordError> {
        Codec::from_id(self.attributes & 0x07, self.magic)
    }

    /// The timestamp type; always create time for v0.
    #[must_use]
    pub fn timestamp_type(&self) -> TimestampType {
        if self.magic == 0 {
            TimestampType::CreateTime
        } else {
            TimestampType::from_attributes(self.attributes)
        }
    }
}

fn read_bytes<'a>(entry: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, RecordError> {
    if *pos + 4 > entry.len() {
        return Err(RecordError::Corrupt(
            "message key or value length overruns the entry",
        ));
    }
    let len = be_i32(entry, *pos);
    *pos += 4;
    if len == -1 {
        return Ok(None);
    }
    let Some(bytes) = usize::try_from(len)
        .ok()
        .and_then(|l| entry.get(*pos..*pos + l))
    else {
        return Err(RecordError::Corrupt(
            "message key or value length overruns the entry",
        ));
    };
    *pos += bytes.len();
    Ok(Some(bytes))
}

/// Parses the legacy message at the start of `buf`: framing and CRC
/// through [`parse_entry`], then key and value lengths, which must fill the
/// entry exactly (spec: STO-11).
pub fn parse_message(buf: &[u8]) -> Result<Message<'_>, RecordError> {
    let info = parse_entry(buf)?;
    if info.magic > 1 {
        return Err(RecordError::Corrupt(
            "expected a legacy message, found a v2 batch",
        ));
    }
    let entry = &buf[..info.size];
    let magic = entry[MAGIC_OFFSET];
    let attributes = entry[ATTRIBUTES_OFFSET];
    let (timestamp, mut pos) = if magic == 1 {
        (be_i64(entry, TIMESTAMP_OFFSET), TIMESTAMP_OFFSET + 8)
    } else {
        (super::NO_TIMESTAMP, TIMESTAMP_OFFSET)
    };
    let key = read_bytes(entry, &mut pos)?;
    let value = read_bytes(entry, &mut pos)?;
    if pos != entry.len() {
        return Err(RecordError::Corrupt("message has bytes after its value"));
    }
    Ok(Message {
        offset: info.base_offset,
        magic,
        attributes,
        timestamp,
        key,
        value,
        size: info.size,
    })
}

/// Bytes a message with these key and value takes, log overhead included.
#[must_use]
pub fn message_size(magic: u8, key: Option<&[u8]>, value: Option<&[u8]>) -> usize {
    let ts = if magic == 1 { 8 } else { 0 };
    LOG_OVERHEAD
        + 4
        + 1
        + 1
        + ts
        + 4
        + key.map_or(0, <[u8]>::len)
        + 4
        + value.map_or(0, <[u8]>::len)
}

/// Appends one message to `out`, computing its CRC (spec: STO-11).
pub fn write_message(
    out: &mut Vec<u8>,
    offset: i64,
    magic: u8,
    attributes: u8,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(), RecordError> {
    let size = message_size(magic, key, value);
    let payload = i32::try_from(size - LOG_OVERHEAD)
        .map_err(|_| RecordError::Unsupported("message larger than 2 GiB"))?;
    let start = out.len();
    out.reserve(size);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(magic);
    out.push(attributes);
    if magic == 1 {
        out.extend_from_slice(&timestamp.to_be_bytes());
    }
    for field in [key, value] {
        match field {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    rewrite_crc(&mut out[start..]);
    Ok(())
}

/// Recomputes the CRC of the message `entry` (exactly one entry) after its
/// attributes or timestamp changed.
pub fn rewrite_crc(entry: &mut [u8]) {
    let crc = crc32fast::hash(&entry[MAGIC_OFFSET..]);
    entry[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Calls `f` for every inner message of a decompressed wrapper payload,
/// checking each one's framing and CRC, that its magic equals the
/// wrapper's and that it is not itself compressed (spec: STO-20). Returns
/// the number of inner messages; an empty set is an error.
pub fn for_each_inner<'a>(
    inner: &'a [u8],
    wrapper_magic: u8,
    mut f: impl FnMut(usize, &Message<'a>) -> Result<(), RecordError>,
) -> Result<usize, RecordError> {
    let mut pos = 0;
    let mut n = 0;
    while pos < inner.len() {
        let m = parse_message(&inner[pos..])?;
        if m.magic != wrapper_magic {
            return Err(RecordError::InvalidRecord(
                "inner message magic differs from its wrapper",
            ));
        }
        if m.attributes & 0x07 != 0 {
            return Err(RecordError::InvalidRecord(
                "compressed message nested in a compressed message",
            ));
        }
        f(pos, &m)?;
        pos += m.size;
        n += 1;
    }
    if n == 0 {
        return Err(RecordError::InvalidRecord(
            "compressed message holds no messages",
        ));
    }
    Ok(n)
}
