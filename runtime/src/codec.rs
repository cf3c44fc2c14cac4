//! The one place Gregor turns its own state into bytes: serde + bincode 2.x
//! behind a leading format-version byte and a CRC32C, so the encoding can be
//! swapped later without losing files written by an older broker
//! (spec: PRO-60).
//!
//! Layout of an encoded blob:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | format version ([`FORMAT_BINCODE2`]) |
//! | 1..5 | CRC32C of the payload, little endian |
//! | 5.. | payload (bincode 2, standard configuration) |

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Format version byte: bincode 2 with its standard configuration.
pub const FORMAT_BINCODE2: u8 = 1;

/// Bytes in front of the payload: version byte + CRC32C.
const HEADER_BYTES: usize = 5;

/// Why a blob could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The blob is shorter than its header.
    #[error("encoded blob is truncated ({0} bytes)")]
    Truncated(usize),
    /// The format version byte is not one this build can read.
    #[error("unknown encoding format version {0}")]
    UnknownFormat(u8),
    /// The payload's checksum does not match: the file is damaged.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC32C stored in the header.
        stored: u32,
        /// CRC32C of the payload as read.
        computed: u32,
    },
    /// bincode could not encode the value.
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// bincode could not decode the payload.
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The payload decoded but left bytes over.
    #[error("{0} trailing bytes after the payload")]
    Trailing(usize),
    /// Reading or writing the file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `value` as a versioned, checksummed blob.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let payload = bincode::serde::encode_to_vec(value, bincode::config::standard())?;
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.push(FORMAT_BINCODE2);
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes a blob written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() < HEADER_BYTES {
        return Err(CodecError::Truncated(bytes.len()));
    }
    if bytes[0] != FORMAT_BINCODE2 {
        return Err(CodecError::UnknownFormat(bytes[0]));
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let payload = &bytes[HEADER_BYTES..];
    let computed = crc32c::crc32c(payload);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    let (value, used) = bincode::serde::decode_from_slice(payload, bincode::config::standard())?;
    if used != payload.len() {
        return Err(CodecError::Trailing(payload.len() - used));
    }
    Ok(value)
}

/// Writes `value` to `path` atomically: a temporary file in the same
/// directory, fsync, rename over `path`, fsync of the directory. A crash
/// leaves either the old or the new file, never a torn one (spec: PRO-61).
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), CodecError> {
    let bytes = encode(value)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Reads a file written by [`write_atomic`]; `Ok(None)` when it does not exist.
pub fn read_file<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, CodecError> {
    match std::fs::read(path) {
        Ok(bytes) => decode(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        counts: BTreeMap<String, u32>,
    }

    fn sample() -> Sample {
        Sample {
            name: "t".into(),
            counts: [("a".to_owned(), 3)].into_iter().collect(),
        }
    }

    // spec: PRO-60
    #[test]
    fn round_trip_and_damage_detection() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes[0], FORMAT_BINCODE2);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode::<Sample>(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(matches!(
            decode::<Sample>(&bytes[..3]),
            Err(CodecError::Truncated(3))
        ));
    }

    // spec: PRO-61
    #[test]
    fn atomic_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        assert!(read_file::<Sample>(&path).unwrap().is_none());
        write_atomic(&path, &sample()).unwrap();
        assert_eq!(read_file::<Sample>(&path).unwrap(), Some(sample()));
        assert!(!dir.path().join("meta.tmp").exists());
    }
}
