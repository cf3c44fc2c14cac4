//! Zig-zag variable-length integers as used inside v2 record batches
//! (spec: STO-14). A varint encodes an `i32` in at most 5 bytes, a varlong
//! an `i64` in at most 10; seven bits per byte, least significant group
//! first, the high bit set on every byte but the last.

use super::RecordError;

/// Longest legal varint encoding.
pub const VARINT_MAX_LEN: usize = 5;
/// Longest legal varlong encoding.
pub const VARLONG_MAX_LEN: usize = 10;

/// Reads a zig-zag varint at `*pos`, advancing `*pos` past it.
///
/// Encodings longer than 5 bytes, or whose fifth byte carries bits beyond
/// 32, are rejected (spec: STO-14).
#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, RecordError> {
    // Most varints inside records are one byte (deltas, counts, lengths
    // below 64) or two (lengths below 8 KiB).
    if let Some(&b0) = buf.get(*pos) {
        if b0 < 0x80 {
            *pos += 1;
            let raw = u32::from(b0);
            return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
        if let Some(&b1) = buf.get(*pos + 1)
            && b1 < 0x80
        {
            *pos += 2;
            let raw = u32::from(b0 & 0x7f) | (u32::from(b1) << 7);
            return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    let mut raw: u32 = 0;
    let mut shift = 0u32;
    let mut at = *pos;
    loop {
        let Some(&b) = buf.get(at) else {
            return Err(RecordError::Corrupt(
                "varint runs past the end of its container",
            ));
        };
        at += 1;
        if shift == 28 && b > 0x0f {
            return Err(RecordError::Corrupt("varint longer than 32 bits"));
        }
        raw |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    *pos = at;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zig-zag varlong at `*pos`, advancing `*pos` past it.
#[inline]
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, RecordError> {
    if let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        let raw = u64::from(b);
        return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
    }
    let mut raw: u64 = 0;
    let mut shift = 0u32;
    let mut at = *pos;
    loop {
        let Some(&b) = buf.get(at) else {
            return Err(RecordError::Corrupt(
                "varlong runs past the end of its container",
            ));
        };
        at += 1;
        if shift == 63 && b > 0x01 {
            return Err(RecordError::Corrupt("varlong longer than 64 bits"));
        }
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    *pos = at;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

#[inline]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Appends `v` as a zig-zag varint.
#[inline]
pub fn write_varint(out: &mut Vec<u8>, v: i32) {
    let mut raw = zigzag32(v);
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Appends `v` as a zig-zag varlong.
#[inline]
pub fn write_varlong(out: &mut Vec<u8>, v: i64) {
    let mut raw = zigzag64(v);
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Bytes [`write_varint`] uses for `v`.
#[inline]
#[must_use]
pub fn varint_len(v: i32) -> usize {
    let raw = zigzag32(v);
    (32 - raw.leading_zeros() as usize).max(1).div_ceil(7)
}

/// Bytes [`write_varlong`] uses for `v`.
#[inline]
#[must_use]
pub fn varlong_len(v: i64) -> usize {
    let raw = zigzag64(v);
    (64 - raw.leading_zeros() as usize).max(1).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers from the zig-zag definition: 0→0, -1→1, 1→2, -2→3,
    // 63→126, -64→127, 64→128 (two bytes 0x80 0x01).
    #[test]
    fn zigzag_known_answers() {
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(v, bytes) in cases {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out, bytes, "encoding {v}");
            assert_eq!(varint_len(v), bytes.len());
            let mut pos = 0;
            assert_eq!(read_varint(bytes, &mut pos).unwrap(), v);
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn varlong_extremes_round_trip() {
        for v in [0, 1, -1, i64::MAX, i64::MIN, 1 << 40, -(1 << 40)] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            assert_eq!(varlong_len(v), out.len());
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos).unwrap(), v);
            assert_eq!(pos, out.len());
        }
    }

    // spec: STO-14
    #[test]
    fn overlong_and_truncated_varints_are_errors() {
        let mut pos = 0;
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut pos).is_err());
        assert!(read_varint(&[0x80, 0x80], &mut pos).is_err());
        assert!(read_varlong(&[0xff; 11], &mut pos).is_err());
        assert_eq!(pos, 0, "a failed read leaves the position alone");
    }
}
