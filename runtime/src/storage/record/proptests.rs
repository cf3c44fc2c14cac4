//! Property tests: random and mutated bytes never panic the parser, the
//! validator, offset assignment, the decoder or conversion; whatever the
//! validator accepts decodes to the number of records it counted; built
//! batches round-trip.

use proptest::prelude::*;

use super::compression::compress;
use super::tests::{Input, build, expected};
use super::*;

const CAP: usize = 1 << 20;

/// Runs every entry point over `bytes`; returns the validation result.
fn exercise(bytes: &[u8]) -> Result<ValidationSummary, RecordError> {
    let _ = parse_entry(bytes);
    let _ = scan_entries(bytes);
    let summary = Validator::new(CAP).validate(bytes);
    let decoded: Result<Vec<Record>, RecordError> = RecordIter::new(bytes, 0)
        .with_max_decompressed_bytes(CAP)
        .collect();
    let mut copy = bytes.to_vec();
    let mut scratch = Vec::new();
    let assigned = assign_offsets_with(&mut copy, 7, 3, Some(99), &mut scratch, CAP);
    // The one-call produce path agrees with the two steps.
    let mut combined = bytes.to_vec();
    let both = Validator::new(CAP).validate_and_assign(&mut combined, 7, 3, Some(99));
    if let (Ok(s), Ok((s2, a2))) = (&summary, &both) {
        assert_eq!(s, s2);
        assert_eq!(Some(a2), assigned.as_ref().ok());
        assert_eq!(
            combined, copy,
            "with log-append time both write the same bytes"
        );
    }
    let mut out = Vec::new();
    let _ = down_convert(bytes, 1, &mut out, CAP);
    let _ = down_convert(bytes, 0, &mut out, CAP);
    out.clear();
    let _ = up_convert(bytes, &mut out, CAP);
    let _ = decoded;
    if let Ok(s) = &summary {
        // Whatever the validator accepts, the leader can assign offsets to
        // and readers can then read in full, at exactly those offsets.
        let a = assigned.expect("validated payload must take offsets");
        assert_eq!(a.last_offset - a.first_offset + 1, s.records as i64);
        assert!(
            scan_entries(&copy).1.is_none(),
            "assignment keeps entries valid"
        );
        let decoded = decode_records(&copy, 0).expect("validated payload must decode");
        if !s.has_control {
            let offsets: Vec<i64> = decoded.iter().map(|r| r.offset).collect();
            assert_eq!(
                offsets,
                (a.first_offset..=a.last_offset).collect::<Vec<_>>()
            );
        }
    }
    summary
}

/// Recomputes the checksum of every entry whose framing still holds, so
/// that mutations reach the structure under the checksum.
fn fix_crcs(buf: &mut [u8]) {
    let mut pos = 0;
    while let Ok((size, magic)) = frame_entry(&buf[pos..]) {
        let entry = &mut buf[pos..pos + size];
        if magic == 2 {
            v2::rewrite_crc(entry)
        } else {
            legacy::rewrite_crc(entry)
        }
        pos += size;
    }
}

fn format() -> impl Strategy<Value = (u8, Codec)> {
    (0u8..3, 0u8..5).prop_map(|(m, c)| {
        let codec = Codec::from_id(c, 2).unwrap();
        if codec.supported_by(m) {
            (m, codec)
        } else {
            (m, Codec::None)
        }
    })
}

fn inputs(max: usize) -> impl Strategy<Value = Vec<Input>> {
    let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40));
    let header = ("[a-z]{0,6}", bytes());
    proptest::collection::vec(
        (
            any::<i64>(),
            bytes(),
            bytes(),
            proptest::collection::vec(header, 0..3),
        ),
        1..max,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(timestamp, key, value, headers)| Input {
                timestamp: timestamp >> 20,
                key,
                value,
                headers,
            })
            .collect()
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
}

fn mutate(buf: &mut Vec<u8>, m: &Mutation) {
    if buf.is_empty() {
        return;
    }
    match *m {
        Mutation::Flip(at, bit) => {
            let at = at % buf.len();
            buf[at] ^= 1 << (bit % 8);
        }
        Mutation::Set(at, v) => {
            let at = at % buf.len();
            buf[at] = v;
        }
        Mutation::Truncate(at) => buf.truncate(at % buf.len()),
        Mutation::Insert(at, v) => {
            let at = at % buf.len();
            buf.insert(at, v);
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Set(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Insert(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Random bytes, some starting with a plausible header.
    #[test]
    fn random_bytes_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..300),
        magic in 0u8..3,
        plausible in any::<bool>(),
        fix in any::<bool>(),
    ) {
        if plausible && bytes.len() > 20 {
            let len = bytes.len() as i32 - 12;
            bytes[8..12].copy_from_slice(&len.to_be_bytes());
            bytes[16] = magic;
        }
        if fix {
            fix_crcs(&mut bytes);
        }
        let _ = exercise(&bytes);
    }

    /// Valid payloads of every format and codec, mutated, with checksums
    /// optionally repaired so the damage reaches the records.
    #[test]
    fn mutated_payloads_never_panic(
        (magic, codec) in format(),
        records in inputs(8),
        mutations in proptest::collection::vec(mutation(), 1..4),
        fix in any::<bool>(),
    ) {
        let records: Vec<Input> = records.into_iter().map(|mut r| { if magic < 2 { r.headers.clear(); } r }).collect();
        let mut buf = build(magic, codec, 0, &records);
        for m in &mutations {
            mutate(&mut buf, m);
        }
        if fix {
            fix_crcs(&mut buf);
        }
        let _ = exercise(&buf);
    }

    /// A valid entry whose compressed payload holds damaged records: the
    /// damage is only visible after decompression.
    #[test]
    fn damaged_records_under_compression_never_panic(
        magic in 0u8..3,
        codec in 1u8..5,
        records in inputs(6),
        mutations in proptest::collection::vec(mutation(), 1..3),
    ) {
        let codec = Codec::from_id(codec, 2).unwrap();
        let codec = if codec.supported_by(magic) { codec } else { Codec::Gzip };
        let records: Vec<Input> = records.into_iter().map(|mut r| { if magic < 2 { r.headers.clear(); } r }).collect();
        let plain = build(magic, Codec::None, 0, &records);
        let mut body = if magic == 2 { v2::records_section(&plain).to_vec() } else { plain.clone() };
        for m in &mutations {
            mutate(&mut body, m);
        }
        if magic < 2 {
            fix_crcs(&mut body);
        }
        let mut packed = Vec::new();
        compress(codec, magic, &body, &mut packed).unwrap();
        let mut entry = Vec::new();
        if magic == 2 {
            entry.extend_from_slice(&plain[..V2_HEADER_LEN]);
            entry.extend_from_slice(&packed);
            let len = (entry.len() - LOG_OVERHEAD) as i32;
            entry[8..12].copy_from_slice(&len.to_be_bytes());
            entry[v2::ATTRIBUTES_OFFSET + 1] |= codec.id();
            v2::rewrite_crc(&mut entry);
        } else {
            legacy::write_message(&mut entry, 0, magic, codec.id(), 0, None, Some(&packed)).unwrap();
        }
        let _ = exercise(&entry);
    }

    /// The produce-path framing pass accepts and rejects exactly what the
    /// full record walk with the offset-delta check does, with the same
    /// error, and finds the same timestamp bounds (spec: STO-90).
    #[test]
    fn framing_pass_agrees_with_the_record_walk(
        records in inputs(12),
        mutations in proptest::collection::vec(mutation(), 0..4),
        count_change in -2i32..3,
    ) {
        let plain = build(2, Codec::None, 0, &records);
        let mut section = v2::records_section(&plain).to_vec();
        for m in &mutations {
            mutate(&mut section, m);
        }
        let count = records.len() as i32 + count_change;
        let walked = (|| {
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            for (i, r) in v2::RecordWalker::new(&section, count).enumerate() {
                let r = r?;
                if i64::from(r.offset_delta) != i as i64 {
                    return Err(RecordError::InvalidRecord(
                        "record offset deltas are not 0..n-1",
                    ));
                }
                lo = lo.min(r.timestamp_delta);
                hi = hi.max(r.timestamp_delta);
            }
            Ok((lo, hi))
        })();
        let framed = v2::check_records(&section, count)
            .map(|f| (f.min_timestamp_delta, f.max_timestamp_delta));
        prop_assert_eq!(framed, walked);
    }

    /// Builder → validate → assign → decode gives back the records.
    #[test]
    fn built_batches_round_trip(
        (magic, codec) in format(),
        records in inputs(20),
        base in 0i64..1 << 40,
        append_time in proptest::option::of(0i64..1 << 41),
    ) {
        let records: Vec<Input> = records.into_iter().map(|mut r| { if magic < 2 { r.headers.clear(); } r }).collect();
        let mut buf = build(magic, codec, 0, &records);
        let s = exercise(&buf).unwrap();
        prop_assert_eq!(s.records, records.len() as u64);
        let a = assign_offsets(&mut buf, base, 2, append_time).unwrap();
        prop_assert_eq!(a.last_offset, base + records.len() as i64 - 1);
        let want_time = if magic == 0 { None } else { append_time };
        prop_assert_eq!(decode_records(&buf, 0).unwrap(), expected(magic, base, &records, want_time));
    }

    /// Every codec's decoder, fed damaged or extended compressed bytes,
    /// returns an error or bounded output, never a panic (spec: STO-19).
    #[test]
    fn damaged_compressed_bytes_never_panic(
        codec in 1u8..5,
        magic in 0u8..3,
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        mutations in proptest::collection::vec(mutation(), 0..3),
        tail in proptest::collection::vec(any::<u8>(), 0..24),
    ) {
        let codec = Codec::from_id(codec, 2).unwrap();
        let mut packed = Vec::new();
        compress(codec, magic, &data, &mut packed).unwrap();
        for m in &mutations {
            mutate(&mut packed, m);
        }
        packed.extend_from_slice(&tail);
        let mut out = Vec::new();
        if compression::decompress(codec, &packed, &mut out, 4096).is_ok() {
            prop_assert!(out.len() <= 4096);
        }
    }
}
