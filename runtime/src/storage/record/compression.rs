//! Compression codecs and their framings (spec: STO-16 … STO-19).
//!
//! Compressed entries stay compressed on disk; the broker only decompresses
//! to validate a produce payload, to rebuild a legacy wrapper whose inner
//! offsets must change, and to convert formats for old or new clients.
//! Every decompression is bounded by a caller-given cap so that a small
//! payload that inflates to gigabytes (a "zip bomb") is an error, not an
//! out-of-memory abort (spec: STO-19).

use std::io::{Read, Write};

use super::RecordError;

/// Default cap on the decompressed size of one entry's payload.
///
/// A produce request is bounded by `message.max.bytes` (1 MiB by default,
/// commonly raised to tens of MiB) *compressed*; text compresses around ten
/// to one, so 256 MiB leaves room for any batch a real client builds while
/// keeping the worst case far below the machine's memory.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// Size of the raw blocks in the xerial snappy framing Java clients write
/// (snappy-java's default block size).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// `\x82SNAPPY\0`: the first eight bytes of a xerial snappy stream.
pub const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// The xerial header: magic, version (i32 = 1), compatible version (i32 = 1).
const XERIAL_HEADER_LEN: usize = 16;

/// The LZ4 frame magic number (little-endian on the wire).
const LZ4_MAGIC: u32 = 0x184D_2204;

/// A compression codec, as carried in the low three bits of an entry's
/// attributes (spec: STO-16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    /// No compression (0).
    None,
    /// gzip (1), RFC 1952 members.
    Gzip,
    /// snappy (2): xerial framing on write, xerial or raw on read.
    Snappy,
    /// LZ4 frame format (3).
    Lz4,
    /// zstd (4): v2 batches only.
    Zstd,
}

impl Codec {
    /// All codecs, in attribute order.
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    /// The codec for the low three attribute bits of an entry of `magic`.
    /// zstd exists only in v2 batches; ids 5–7 exist nowhere (spec: STO-16).
    pub fn from_id(id: u8, magic: u8) -> Result<Codec, RecordError> {
        match id {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 if magic >= 2 => Ok(Codec::Zstd),
            _ => Err(RecordError::UnsupportedCodec { magic, codec: id }),
        }
    }

    /// The attribute bits of this codec.
    #[must_use]
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// Whether this codec may appear in an entry of `magic`.
    #[must_use]
    pub fn supported_by(self, magic: u8) -> bool {
        self != Codec::Zstd || magic >= 2
    }

    /// A short lower-case name (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn codec_error(codec: Codec, e: impl std::fmt::Display) -> RecordError {
    RecordError::Decompress {
        codec,
        reason: e.to_string(),
    }
}

/// Compresses `input` with `codec`, appending the framed result to `out`.
///
/// `magic` selects the LZ4 header checksum: magic-0 messages carry the
/// checksum Kafka historically computed over the magic number too
/// (KAFKA-3160), everything newer the correct one (spec: STO-18).
/// [`Codec::None`] appends `input` unchanged.
pub fn compress(
    codec: Codec,
    magic: u8,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    match codec {
        Codec::None => out.extend_from_slice(input),
        Codec::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            enc.write_all(input).map_err(|e| codec_error(codec, e))?;
            enc.finish().map_err(|e| codec_error(codec, e))?;
        }
        Codec::Snappy => compress_xerial(input, out)?,
        Codec::Lz4 => {
            let start = out.len();
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            enc.write_all(input).map_err(|e| codec_error(codec, e))?;
            let out = enc.finish().map_err(|e| codec_error(codec, e))?;
            if magic == 0 {
                // spec: STO-18 — the header checksum magic-0 readers expect.
                let hc_at = start + 6;
                out[hc_at] = lz4_header_checksum(&out[start..hc_at]);
            }
        }
        Codec::Zstd => {
            let mut enc =
                zstd::stream::write::Encoder::new(out, 3).map_err(|e| codec_error(codec, e))?;
            enc.write_all(input).map_err(|e| codec_error(codec, e))?;
            enc.finish().map_err(|e| codec_error(codec, e))?;
        }
    }
    Ok(())
}

// spec: STO-17 — xerial framing: header, then i32-length-prefixed raw blocks.
fn compress_xerial(input: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut enc = snap::raw::Encoder::new();
    for chunk in input.chunks(XERIAL_BLOCK_BYTES) {
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let body_at = out.len();
        out.resize(body_at + snap::raw::max_compress_len(chunk.len()), 0);
        let n = enc
            .compress(chunk, &mut out[body_at..])
            .map_err(|e| codec_error(Codec::Snappy, e))?;
        out.truncate(body_at + n);
        out[len_at..body_at].copy_from_slice(&(n as i32).to_be_bytes());
    }
    Ok(())
}

/// Decompresses `input` (framed as `codec` writes it) into `out`, which is
/// cleared first and reused across calls. Fails with
/// [`RecordError::DecompressedTooLarge`] as soon as the output would exceed
/// `max_bytes` (spec: STO-19).
pub fn decompress(
    codec: Codec,
    input: &[u8],
    out: &mut Vec<u8>,
    max_bytes: usize,
) -> Result<(), RecordError> {
    out.clear();
    match codec {
        Codec::None => {
            if input.len() > max_bytes {
                return Err(RecordError::DecompressedTooLarge { limit: max_bytes });
            }
            out.extend_from_slice(input);
            Ok(())
        }
        Codec::Gzip => read_bounded(
            codec,
            flate2::read::MultiGzDecoder::new(input),
            out,
            max_bytes,
        ),
        Codec::Snappy => decompress_snappy(input, out, max_bytes),
        Codec::Lz4 => decompress_lz4(input, out, max_bytes),
        Codec::Zstd => {
            let mut dec =
                zstd::stream::read::Decoder::new(input).map_err(|e| codec_error(codec, e))?;
            // Bound the window the decoder may allocate as well as the output.
            let window_log = usize::BITS - max_bytes.max(1 << 10).leading_zeros();
            dec.window_log_max(window_log.clamp(10, 27))
                .map_err(|e| codec_error(codec, e))?;
            read_bounded(codec, dec, out, max_bytes)
        }
    }
}

fn read_bounded(
    codec: Codec,
    reader: impl Read,
    out: &mut Vec<u8>,
    max_bytes: usize,
) -> Result<(), RecordError> {
    let mut limited = reader.take(max_bytes as u64 + 1);
    limited
        .read_to_end(out)
        .map_err(|e| codec_error(codec, e))?;
    if out.len() > max_bytes {
        return Err(RecordError::DecompressedTooLarge { limit: max_bytes });
    }
    Ok(())
}

fn decompress_snappy(input: &[u8], out: &mut Vec<u8>, max_bytes: usize) -> Result<(), RecordError> {
    let mut dec = snap::raw::Decoder::new();
    let mut block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), RecordError> {
        let n = snap::raw::decompress_len(raw).map_err(|e| codec_error(Codec::Snappy, e))?;
        if n > max_bytes.saturating_sub(out.len()) {
            return Err(RecordError::DecompressedTooLarge { limit: max_bytes });
        }
        let at = out.len();
        out.resize(at + n, 0);
        let written = dec
            .decompress(raw, &mut out[at..])
            .map_err(|e| codec_error(Codec::Snappy, e))?;
        out.truncate(at + written);
        Ok(())
    };
    if !input.starts_with(&XERIAL_MAGIC) {
        // spec: STO-17 — a raw snappy block (what some non-Java clients send).
        return block(input, out);
    }
    if input.len() < XERIAL_HEADER_LEN {
        return Err(RecordError::Decompress {
            codec: Codec::Snappy,
            reason: "truncated xerial header".into(),
        });
    }
    let mut pos = XERIAL_HEADER_LEN;
    while pos < input.len() {
        let Some(len_bytes) = input.get(pos..pos + 4) else {
            return Err(RecordError::Decompress {
                codec: Codec::Snappy,
                reason: "truncated xerial block length".into(),
            });
        };
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        pos += 4;
        let Some(raw) = usize::try_from(len)
            .ok()
            .and_then(|l| input.get(pos..pos + l))
        else {
            return Err(RecordError::Decompress {
                codec: Codec::Snappy,
                reason: format!("xerial block length {len} overruns the payload"),
            });
        };
        block(raw, out)?;
        pos += raw.len();
    }
    Ok(())
}

/// The LZ4 frame-descriptor checksum byte: the second byte of XXH32 (seed
/// 0) over `bytes`.
fn lz4_header_checksum(bytes: &[u8]) -> u8 {
    (xxh32(bytes, 0) >> 8) as u8
}

// spec: STO-18 — check the frame descriptor ourselves, accepting both the
// correct header checksum and the one magic-0 writers used, then hand the
// decoder a descriptor with the correct checksum.
fn decompress_lz4(input: &[u8], out: &mut Vec<u8>, max_bytes: usize) -> Result<(), RecordError> {
    let bad = |reason: &str| RecordError::Decompress {
        codec: Codec::Lz4,
        reason: reason.to_owned(),
    };
    if input.len() < 7 {
        return Err(bad("truncated frame header"));
    }
    if u32::from_le_bytes([input[0], input[1], input[2], input[3]]) != LZ4_MAGIC {
        return Err(bad("not an LZ4 frame"));
    }
    let flg = input[4];
    let mut descriptor_len = 2;
    if flg & 0x08 != 0 {
        descriptor_len += 8; // content size
    }
    if flg & 0x01 != 0 {
        descriptor_len += 4; // dictionary id
    }
    let hc_at = 4 + descriptor_len;
    if input.len() <= hc_at {
        return Err(bad("truncated frame descriptor"));
    }
    let stored = input[hc_at];
    let correct = lz4_header_checksum(&input[4..hc_at]);
    if stored != correct && stored != lz4_header_checksum(&input[..hc_at]) {
        return Err(bad("frame header checksum mismatch"));
    }
    let mut header = [0u8; 19];
    header[..hc_at].copy_from_slice(&input[..hc_at]);
    header[hc_at] = correct;
    let reader = (&header[..=hc_at]).chain(&input[hc_at + 1..]);
    read_bounded(
        Codec::Lz4,
        lz4_flex::frame::FrameDecoder::new(reader),
        out,
        max_bytes,
    )
}

const PRIME32_1: u32 = 0x9E37_79B1;
const PRIME32_2: u32 = 0x85EB_CA77;
const PRIME32_3: u32 = 0xC2B2_AE3D;
const PRIME32_4: u32 = 0x27D4_EB2F;
const PRIME32_5: u32 = 0x1656_67B1;

fn xxh32_round(acc: u32, lane: u32) -> u32 {
    acc.wrapping_add(lane.wrapping_mul(PRIME32_2))
        .rotate_left(13)
        .wrapping_mul(PRIME32_1)
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// XXH32, as the LZ4 frame format uses it for its header checksum.
fn xxh32(input: &[u8], seed: u32) -> u32 {
    let mut rest = input;
    let mut h = if input.len() >= 16 {
        let mut v = [
            seed.wrapping_add(PRIME32_1).wrapping_add(PRIME32_2),
            seed.wrapping_add(PRIME32_2),
            seed,
            seed.wrapping_sub(PRIME32_1),
        ];
        while rest.len() >= 16 {
            for (i, acc) in v.iter_mut().enumerate() {
                *acc = xxh32_round(*acc, le32(&rest[i * 4..]));
            }
            rest = &rest[16..];
        }
        v[0].rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18))
    } else {
        seed.wrapping_add(PRIME32_5)
    };
    h = h.wrapping_add(input.len() as u32);
    while rest.len() >= 4 {
        h = h
            .wrapping_add(le32(rest).wrapping_mul(PRIME32_3))
            .rotate_left(17)
            .wrapping_mul(PRIME32_4);
        rest = &rest[4..];
    }
    for &b in rest {
        h = h
            .wrapping_add(u32::from(b).wrapping_mul(PRIME32_5))
            .rotate_left(11)
            .wrapping_mul(PRIME32_1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(PRIME32_2);
    h ^= h >> 13;
    h = h.wrapping_mul(PRIME32_3);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 1 << 20;

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    // spec: STO-16
    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for codec in Codec::ALL {
            for magic in [0, 1, 2] {
                if !codec.supported_by(magic) {
                    continue;
                }
                let mut packed = Vec::new();
                compress(codec, magic, &data, &mut packed).unwrap();
                if codec != Codec::None {
                    assert!(
                        packed.len() < data.len() / 2,
                        "{codec} should shrink repetitive data"
                    );
                }
                let mut back = vec![1, 2, 3];
                decompress(codec, &packed, &mut back, CAP).unwrap();
                assert!(back == data, "{codec} magic {magic}");
            }
        }
    }

    #[test]
    fn xxh32_known_answers() {
        // Reference values of XXH32 with seed 0.
        assert_eq!(xxh32(b"", 0), 0x02CC_5D05);
        assert_eq!(xxh32(b"a", 0), 0x550D_7456);
        assert_eq!(xxh32(b"abc", 0), 0x32D1_53FF);
        assert_eq!(
            xxh32(b"Nobody inspects the spammish repetition", 0),
            0xE229_3B2F
        );
    }

    // spec: STO-17
    #[test]
    fn snappy_writes_xerial_and_reads_raw() {
        let data = sample();
        let mut packed = Vec::new();
        compress(Codec::Snappy, 2, &data, &mut packed).unwrap();
        assert_eq!(&packed[..8], &XERIAL_MAGIC);
        assert_eq!(&packed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut back = Vec::new();
        decompress(Codec::Snappy, &raw, &mut back, CAP).unwrap();
        assert!(back == data);
    }

    // spec: STO-18
    #[test]
    fn lz4_header_checksum_follows_magic_and_both_are_read() {
        let data = b"hello hello hello hello";
        let mut v0 = Vec::new();
        compress(Codec::Lz4, 0, data, &mut v0).unwrap();
        let mut v2 = Vec::new();
        compress(Codec::Lz4, 2, data, &mut v2).unwrap();
        assert_eq!(&v0[..4], &LZ4_MAGIC.to_le_bytes());
        assert_eq!(
            v0[6],
            lz4_header_checksum(&v0[..6]),
            "magic 0 covers the magic number"
        );
        assert_eq!(
            v2[6],
            lz4_header_checksum(&v2[4..6]),
            "magic 2 covers the descriptor only"
        );
        assert_ne!(v0[6], v2[6]);
        for packed in [&v0, &v2] {
            let mut back = Vec::new();
            decompress(Codec::Lz4, packed, &mut back, CAP).unwrap();
            assert_eq!(back, data);
        }
        let mut wrong = v2.clone();
        wrong[6] ^= 0x55;
        let mut back = Vec::new();
        assert!(matches!(
            decompress(Codec::Lz4, &wrong, &mut back, CAP),
            Err(RecordError::Decompress {
                codec: Codec::Lz4,
                ..
            })
        ));
    }

    // spec: STO-19
    #[test]
    fn zip_bombs_hit_the_cap() {
        let zeros = vec![0u8; 4 << 20];
        for codec in Codec::ALL {
            let mut packed = Vec::new();
            compress(codec, 2, &zeros, &mut packed).unwrap();
            let mut back = Vec::new();
            assert_eq!(
                decompress(codec, &packed, &mut back, 1 << 20),
                Err(RecordError::DecompressedTooLarge { limit: 1 << 20 }),
                "{codec}"
            );
            assert!(
                back.capacity() <= (2 << 20) + (1 << 16),
                "{codec} allocated {} bytes",
                back.capacity()
            );
        }
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let junk = b"definitely not compressed data at all";
        for codec in [Codec::Gzip, Codec::Lz4, Codec::Zstd] {
            let mut back = Vec::new();
            assert!(
                matches!(
                    decompress(codec, junk, &mut back, CAP),
                    Err(RecordError::Decompress { .. })
                ),
                "{codec}"
            );
        }
        let mut truncated = XERIAL_MAGIC.to_vec();
        truncated.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1]);
        let mut back = Vec::new();
        assert!(matches!(
            decompress(Codec::Snappy, &truncated, &mut back, CAP),
            Err(RecordError::Decompress { .. })
        ));
    }
}
