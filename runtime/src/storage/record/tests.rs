//! Round trips, known answers and error cases for the record formats.

use super::builder::HeaderRef;
use super::compression::{XERIAL_MAGIC, compress};
use super::*;

/// A record as a test writes it.
#[derive(Clone, Debug)]
pub(crate) struct Input {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

pub(crate) fn sample(n: usize, with_headers: bool) -> Vec<Input> {
    (0..n)
        .map(|i| Input {
            timestamp: 1_700_000_000_000 + (i as i64 * 7) % 13,
            key: (i % 3 != 0).then(|| format!("key-{i}").into_bytes()),
            value: (i % 5 != 4).then(|| format!("value {i} ").repeat(i % 4 + 1).into_bytes()),
            headers: if with_headers && i % 2 == 0 {
                vec![
                    ("trace".into(), Some(vec![i as u8; 3])),
                    ("empty".into(), None),
                ]
            } else {
                vec![]
            },
        })
        .collect()
}

pub(crate) fn build(magic: u8, codec: Codec, base: i64, inputs: &[Input]) -> Vec<u8> {
    let mut b = BatchBuilder::new(magic, codec, base).unwrap();
    for r in inputs {
        let headers: Vec<HeaderRef<'_>> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        b.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers)
            .unwrap();
    }
    b.build().unwrap()
}

/// The records a reader should see for `inputs` stored at `base` in `magic`.
pub(crate) fn expected(
    magic: u8,
    base: i64,
    inputs: &[Input],
    append_time: Option<i64>,
) -> Vec<Record> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (timestamp, timestamp_type) = match (magic, append_time) {
                (0, _) => (NO_TIMESTAMP, TimestampType::CreateTime),
                (_, Some(t)) => (t, TimestampType::LogAppendTime),
                (_, None) => (r.timestamp, TimestampType::CreateTime),
            };
            Record {
                offset: base + i as i64,
                timestamp,
                timestamp_type,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: if magic == 2 {
                    r.headers
                        .iter()
                        .map(|(k, v)| Header {
                            key: k.clone(),
                            value: v.clone(),
                        })
                        .collect()
                } else {
                    vec![]
                },
            }
        })
        .collect()
}

fn formats() -> impl Iterator<Item = (u8, Codec)> {
    [0u8, 1, 2].into_iter().flat_map(|m| {
        Codec::ALL
            .into_iter()
            .filter(move |c| c.supported_by(m))
            .map(move |c| (m, c))
    })
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn zeros_are_never_an_entry() {
    for len in [0, 5, 17, 64, 4096] {
        assert!(parse_entry(&vec![0u8; len]).is_err(), "{len} zero bytes");
        assert!(validate(&vec![0u8; len]).is_err(), "{len} zero bytes");
    }
}

// Known answers: bytes derived by hand from the layouts in spec/storage.md,
// with CRC32 and CRC32C computed by an independent bitwise implementation.

// spec: STO-11
#[test]
fn known_answer_v0_message() {
    let bytes = hex("00000000000000000000001387a77ab20000ffffffff0000000568656c6c6f");
    let mut b = BatchBuilder::new(0, Codec::None, 0).unwrap();
    b.append(123, None, Some(b"hello"), &[]).unwrap();
    assert_eq!(b.build().unwrap(), bytes);
    let info = parse_entry(&bytes).unwrap();
    assert_eq!(
        (info.magic, info.base_offset, info.size, info.max_timestamp),
        (0, 0, 31, -1)
    );
    let m = legacy::parse_message(&bytes).unwrap();
    assert_eq!((m.key, m.value), (None, Some(&b"hello"[..])));
}

// spec: STO-11
#[test]
fn known_answer_v1_message() {
    let bytes = hex("000000000000000300000018bf070c1c01000000015d3ef79800000000016b0000000176");
    let mut b = BatchBuilder::new(1, Codec::None, 3).unwrap();
    b.append(1_500_000_000_000, Some(b"k"), Some(b"v"), &[])
        .unwrap();
    assert_eq!(b.build().unwrap(), bytes);
    let r = decode_records(&bytes, 0).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].offset, r[0].timestamp), (3, 1_500_000_000_000));
}

// spec: STO-12, STO-15
#[test]
fn known_answer_v2_batch() {
    let bytes = hex(
        "00000000000000000000003e0000000002eaec15740000000000000000015d3ef798000000015d3ef79800\
         ffffffffffffffffffffffffffff0000000118000000026b02760202680278",
    );
    let mut b = BatchBuilder::new(2, Codec::None, 0)
        .unwrap()
        .partition_leader_epoch(0);
    b.append(
        1_500_000_000_000,
        Some(b"k"),
        Some(b"v"),
        &[("h", Some(b"x"))],
    )
    .unwrap();
    assert_eq!(b.build().unwrap(), bytes);
    let (h, size) = v2::BatchHeader::parse(&bytes).unwrap();
    assert_eq!(
        (h.crc, h.records_count, h.producer_id, size),
        (0xeaec_1574, 1, -1, bytes.len())
    );
    let r = decode_records(&bytes, 0).unwrap();
    assert_eq!(
        r[0].headers,
        vec![Header {
            key: "h".into(),
            value: Some(b"x".to_vec())
        }]
    );
}

// spec: STO-21, STO-23, STO-25, STO-26, STO-27
#[test]
fn every_format_and_codec_round_trips_through_validate_assign_decode() {
    let mut validator = Validator::default();
    for (magic, codec) in formats() {
        let inputs = sample(40, magic == 2);
        let mut buf = build(magic, codec, 0, &inputs);
        let s = validator.validate(&buf).unwrap();
        assert_eq!(s.records, 40, "{magic}/{codec}");
        assert_eq!(s.single_magic(), Some(magic));
        assert!(s.uses(codec));
        let want_max = if magic == 0 {
            NO_TIMESTAMP
        } else {
            inputs.iter().map(|r| r.timestamp).max().unwrap()
        };
        assert_eq!(s.max_timestamp, want_max, "{magic}/{codec}");
        let want_min = if magic == 0 {
            NO_TIMESTAMP
        } else {
            inputs.iter().map(|r| r.timestamp).min().unwrap()
        };
        assert_eq!(s.min_timestamp, want_min, "{magic}/{codec}");
        let a = assign_offsets(&mut buf, 1000, 7, None).unwrap();
        assert_eq!(
            (a.first_offset, a.last_offset),
            (1000, 1039),
            "{magic}/{codec}"
        );
        assert_eq!(a.max_timestamp, want_max);
        // The assigned payload is still valid and reads back the same.
        let (entries, err) = scan_entries(&buf);
        assert!(err.is_none(), "{magic}/{codec}: {err:?}");
        assert_eq!(entries.last().unwrap().last_offset, 1039);
        if magic == 2 {
            assert_eq!(entries[0].partition_leader_epoch, 7);
        }
        assert_eq!(validator.validate(&buf).unwrap().records, 40);
        assert_eq!(
            decode_records(&buf, 0).unwrap(),
            expected(magic, 1000, &inputs, None),
            "{magic}/{codec}"
        );
    }
}

// spec: STO-24
#[test]
fn log_append_time_stamps_every_format() {
    let t = 1_800_000_000_000;
    for (magic, codec) in formats() {
        let inputs = sample(10, false);
        let mut buf = build(magic, codec, 0, &inputs);
        let a = assign_offsets(&mut buf, 50, 1, Some(t)).unwrap();
        let (_, err) = scan_entries(&buf);
        assert!(
            err.is_none(),
            "{magic}/{codec}: CRC must be recomputed: {err:?}"
        );
        let want = if magic == 0 { None } else { Some(t) };
        assert_eq!(
            a.max_timestamp,
            want.unwrap_or(NO_TIMESTAMP),
            "{magic}/{codec}"
        );
        assert_eq!(
            decode_records(&buf, 0).unwrap(),
            expected(magic, 50, &inputs, want),
            "{magic}/{codec}"
        );
    }
}

// spec: STO-23
#[test]
fn v2_assignment_touches_only_base_offset_and_leader_epoch() {
    for codec in Codec::ALL {
        let before = build(2, codec, 0, &sample(20, true));
        let mut after = before.clone();
        assign_offsets(&mut after, 0x0102_0304_0506, 0x0a0b_0c0d, None).unwrap();
        assert_eq!(&after[0..8], &0x0102_0304_0506i64.to_be_bytes());
        assert_eq!(&after[12..16], &0x0a0b_0c0di32.to_be_bytes());
        assert_eq!(after[8..12], before[8..12]);
        assert_eq!(
            after[16..],
            before[16..],
            "{codec}: nothing under the CRC changes"
        );
    }
}

// spec: STO-23, STO-25
#[test]
fn several_entries_get_contiguous_offsets() {
    let mut buf = build(1, Codec::None, 0, &sample(3, false));
    buf.extend(build(1, Codec::Gzip, 0, &sample(4, false)));
    buf.extend(build(1, Codec::None, 0, &sample(2, false)));
    let s = validate(&buf).unwrap();
    assert_eq!((s.entries, s.records), (6, 9));
    let a = assign_offsets(&mut buf, 10, 0, None).unwrap();
    assert_eq!(
        (a.first_offset, a.last_offset, a.rebuilt_entries),
        (10, 18, 0)
    );
    let offsets: Vec<i64> = decode_records(&buf, 0)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, (10..19).collect::<Vec<_>>());
    // The wrapper carries the offset of its last inner message.
    let (entries, _) = scan_entries(&buf);
    assert_eq!(
        entries.iter().map(|e| e.base_offset).collect::<Vec<_>>(),
        vec![10, 11, 12, 16, 17, 18]
    );
}

/// A v1/v0 wrapper whose inner offsets are arbitrary.
fn wrapper_with_inner_offsets(magic: u8, codec: Codec, offsets: &[i64]) -> Vec<u8> {
    let mut inner = Vec::new();
    for (i, &o) in offsets.iter().enumerate() {
        legacy::write_message(
            &mut inner,
            o,
            magic,
            0,
            1000 + i as i64,
            None,
            Some(format!("m{i}").as_bytes()),
        )
        .unwrap();
    }
    let mut packed = Vec::new();
    compress(codec, magic, &inner, &mut packed).unwrap();
    let mut out = Vec::new();
    legacy::write_message(&mut out, 0, magic, codec.id(), 1002, None, Some(&packed)).unwrap();
    out
}

// spec: STO-25
#[test]
fn wrappers_with_unusable_inner_offsets_are_rebuilt() {
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4] {
        // v1 with 0..n-1: in place.
        let mut buf = wrapper_with_inner_offsets(1, codec, &[0, 1, 2]);
        let a = assign_offsets(&mut buf, 100, 0, None).unwrap();
        assert_eq!((a.last_offset, a.rebuilt_entries), (102, 0));
        // v1 with offsets a client must not send: rebuilt as 0..n-1.
        let mut buf = wrapper_with_inner_offsets(1, codec, &[5, 9, 10]);
        let a = assign_offsets(&mut buf, 100, 0, None).unwrap();
        assert_eq!((a.last_offset, a.rebuilt_entries), (102, 1), "{codec}");
        let r = decode_records(&buf, 0).unwrap();
        assert_eq!(
            r.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![100, 101, 102]
        );
        assert_eq!(r[2].value.as_deref(), Some(&b"m2"[..]));
        // v0 inner offsets are absolute: rebuilt to the assigned ones.
        let mut buf = wrapper_with_inner_offsets(0, codec, &[0, 1, 2]);
        let a = assign_offsets(&mut buf, 100, 0, None).unwrap();
        assert_eq!((a.last_offset, a.rebuilt_entries), (102, 1));
        assert!(parse_entry(&buf).is_ok());
        let r = decode_records(&buf, 0).unwrap();
        assert_eq!(
            r.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![100, 101, 102]
        );
        // ...unless they already are.
        let a = assign_offsets(&mut buf, 100, 0, None).unwrap();
        assert_eq!(a.rebuilt_entries, 0);
    }
}

fn flip(buf: &[u8], at: usize) -> Vec<u8> {
    let mut b = buf.to_vec();
    b[at] ^= 0x40;
    b
}

// spec: STO-11, STO-12
#[test]
fn checksum_mismatches_are_typed_errors() {
    for (magic, codec) in formats() {
        let buf = build(magic, codec, 0, &sample(5, false));
        for at in [MAGIC_OFFSET + 1, buf.len() / 2, buf.len() - 1] {
            let bad = flip(&buf, at);
            let e = validate(&bad).unwrap_err();
            assert!(
                matches!(e, RecordError::CrcMismatch { .. }),
                "{magic}/{codec} byte {at}: {e:?}"
            );
            assert!(e.is_corruption());
            assert!(matches!(
                decode_records(&bad, 0),
                Err(RecordError::CrcMismatch { .. })
            ));
        }
    }
}

fn fix_v2_crc(mut b: Vec<u8>) -> Vec<u8> {
    v2::rewrite_crc(&mut b);
    b
}

// spec: STO-15, STO-21
#[test]
fn malformed_v2_records_are_typed_errors() {
    let good = build(2, Codec::None, 0, &sample(3, true));
    // Record count disagreeing with lastOffsetDelta.
    let mut b = good.clone();
    b[v2::RECORDS_COUNT_OFFSET + 3] = 4;
    assert_eq!(
        validate(&fix_v2_crc(b)),
        Err(RecordError::InvalidRecord(
            "record count is not lastOffsetDelta + 1"
        ))
    );
    // Count and delta agree but there are only 3 records.
    let mut b = good.clone();
    b[v2::RECORDS_COUNT_OFFSET + 3] = 4;
    b[v2::LAST_OFFSET_DELTA_OFFSET + 3] = 3;
    assert!(matches!(
        validate(&fix_v2_crc(b)),
        Err(RecordError::Corrupt(_))
    ));
    // The first record's length varint one too long.
    let mut b = good.clone();
    b[V2_HEADER_LEN] += 2;
    assert!(matches!(
        validate(&fix_v2_crc(b)),
        Err(RecordError::Corrupt(_))
    ));
    // Offset deltas 0 and 2.
    let mut b = BatchBuilder::new(2, Codec::None, 0).unwrap();
    b.append_with_offset(0, 1, None, Some(b"a"), &[]).unwrap();
    b.append_with_offset(2, 1, None, Some(b"b"), &[]).unwrap();
    let mut gap2 = b.build().unwrap();
    gap2[v2::LAST_OFFSET_DELTA_OFFSET + 3] = 1;
    assert_eq!(
        validate(&fix_v2_crc(gap2)),
        Err(RecordError::InvalidRecord(
            "record offset deltas are not 0..n-1"
        ))
    );
    // Size field below the header, and a truncated batch.
    let mut b = good.clone();
    b[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert_eq!(validate(&b), Err(RecordError::InvalidSize(10)));
    assert!(matches!(
        validate(&good[..good.len() - 1]),
        Err(RecordError::Truncated { .. })
    ));
    // Codec 5.
    let mut b = good.clone();
    b[v2::ATTRIBUTES_OFFSET + 1] |= 5;
    assert_eq!(
        validate(&fix_v2_crc(b)),
        Err(RecordError::UnsupportedCodec { magic: 2, codec: 5 })
    );
}

// spec: STO-11, STO-16, STO-20
#[test]
fn malformed_legacy_messages_are_typed_errors() {
    let good = build(1, Codec::None, 0, &sample(1, false));
    // Value length overrunning the message.
    let mut b = good.clone();
    let vlen_at = 30 + 3; // key length at 26 (null), value length at 30..34
    b[vlen_at] = 0x7f;
    legacy::rewrite_crc(&mut b);
    assert!(matches!(validate(&b), Err(RecordError::Corrupt(_))));
    // zstd does not exist in v1.
    let mut b = good.clone();
    b[legacy::ATTRIBUTES_OFFSET] = 4;
    legacy::rewrite_crc(&mut b);
    assert_eq!(
        validate(&b),
        Err(RecordError::UnsupportedCodec { magic: 1, codec: 4 })
    );
    // A compressed message inside a compressed message.
    let inner = build(1, Codec::Gzip, 0, &sample(2, false));
    let mut packed = Vec::new();
    compress(Codec::Gzip, 1, &inner, &mut packed).unwrap();
    let mut nested = Vec::new();
    legacy::write_message(&mut nested, 0, 1, 1, 0, None, Some(&packed)).unwrap();
    assert_eq!(
        validate(&nested),
        Err(RecordError::InvalidRecord(
            "compressed message nested in a compressed message"
        ))
    );
    // A v0 message inside a v1 wrapper.
    let inner = build(0, Codec::None, 0, &sample(2, false));
    let mut packed = Vec::new();
    compress(Codec::Snappy, 1, &inner, &mut packed).unwrap();
    let mut mixed = Vec::new();
    legacy::write_message(&mut mixed, 0, 1, 2, 0, None, Some(&packed)).unwrap();
    assert_eq!(
        validate(&mixed),
        Err(RecordError::InvalidRecord(
            "inner message magic differs from its wrapper"
        ))
    );
}

// spec: STO-19
#[test]
fn a_zip_bomb_batch_is_refused() {
    let zeros = vec![0u8; 2 << 20];
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let mut b = BatchBuilder::new(2, codec, 0).unwrap();
        b.append(0, None, Some(&zeros), &[]).unwrap();
        let buf = b.build().unwrap();
        assert!(buf.len() < 200 << 10, "{codec}: {}", buf.len());
        let mut v = Validator::new(1 << 20);
        assert_eq!(
            v.validate(&buf),
            Err(RecordError::DecompressedTooLarge { limit: 1 << 20 }),
            "{codec}"
        );
        assert!(Validator::new(4 << 20).validate(&buf).is_ok());
        let r: Result<Vec<_>, _> = RecordIter::new(&buf, 0)
            .with_max_decompressed_bytes(1 << 20)
            .collect();
        assert!(matches!(r, Err(RecordError::DecompressedTooLarge { .. })));
    }
}

// spec: STO-22
#[test]
fn producer_fields_are_reported_and_must_agree() {
    let mk = |pid: i64, epoch: i16, seq: i32, n: usize| {
        let mut b = BatchBuilder::new(2, Codec::None, 0)
            .unwrap()
            .producer(pid, epoch, seq)
            .transactional(pid == 9);
        for r in sample(n, false) {
            b.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &[])
                .unwrap();
        }
        b.build().unwrap()
    };
    let s = validate(&mk(42, 3, 10, 5)).unwrap();
    assert_eq!(
        s.producer,
        Some(ProducerInfo {
            producer_id: 42,
            producer_epoch: 3,
            base_sequence: 10,
            last_sequence: 14,
            transactional: false
        })
    );
    // Sequences wrap at i32::MAX.
    let s = validate(&mk(9, 0, i32::MAX - 1, 4)).unwrap();
    assert_eq!(s.producer.unwrap().last_sequence, 1);
    assert!(s.producer.unwrap().transactional);
    let mut two = mk(42, 3, 10, 5);
    two.extend(mk(42, 3, 15, 2));
    assert_eq!(validate(&two).unwrap().producer.unwrap().last_sequence, 16);
    let mut mixed = mk(42, 3, 10, 5);
    mixed.extend(mk(43, 3, 0, 2));
    assert!(matches!(
        validate(&mixed),
        Err(RecordError::InvalidRecord(_))
    ));
    assert_eq!(
        validate(&build(2, Codec::None, 0, &sample(2, false)))
            .unwrap()
            .producer,
        None
    );
}

// spec: STO-26
#[test]
fn decoding_skips_below_the_start_offset_and_stops_at_a_partial_tail() {
    for (magic, codec) in formats() {
        let inputs = sample(10, false);
        let mut buf = build(magic, codec, 0, &inputs);
        buf.extend(build(magic, codec, 10, &inputs));
        let r = decode_records(&buf, 13).unwrap();
        assert_eq!(
            r,
            expected(magic, 0, &[inputs.clone(), inputs.clone()].concat(), None)[13..],
            "{magic}/{codec}"
        );
        // A Fetch response cut inside the last entry: the rest still reads.
        let r = decode_records(&buf[..buf.len() - 3], 0).unwrap();
        let want = if magic < 2 && codec == Codec::None {
            19
        } else {
            10
        };
        assert_eq!(r.len(), want, "{magic}/{codec}");
    }
}

// spec: STO-26
#[test]
fn control_batches_are_not_user_records() {
    let mut b = BatchBuilder::new(2, Codec::None, 5)
        .unwrap()
        .control(true)
        .transactional(true)
        .producer(1, 0, -1);
    b.append(0, Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 0]), &[])
        .unwrap();
    let mut buf = build(2, Codec::None, 0, &sample(5, false));
    buf.extend(b.build().unwrap());
    let r = decode_records(&buf, 0).unwrap();
    assert_eq!(r.len(), 5);
    assert!(r.iter().all(|r| r.offset < 5));
}

// spec: STO-18
#[test]
fn lz4_magic0_wrappers_carry_the_historical_header_checksum() {
    let buf = build(0, Codec::Lz4, 0, &sample(5, false));
    let m = legacy::parse_message(&buf).unwrap();
    let frame = m.value.unwrap();
    // The descriptor checksum byte covers magic number + FLG + BD.
    let v2_batch = build(2, Codec::Lz4, 0, &sample(5, false));
    let v2_frame = v2::records_section(&v2_batch);
    assert_eq!(&frame[4..6], &v2_frame[4..6], "same descriptor");
    assert_ne!(frame[6], v2_frame[6], "different header checksum");
    assert_eq!(decode_records(&buf, 0).unwrap().len(), 5);
    // A v1 wrapper carrying the old checksum is still read.
    let v1 = build(1, Codec::Lz4, 0, &sample(5, false));
    let m1 = legacy::parse_message(&v1).unwrap();
    let mut packed = m1.value.unwrap().to_vec();
    packed[6] = frame[6];
    let mut odd = Vec::new();
    legacy::write_message(
        &mut odd,
        m1.offset,
        1,
        m1.attributes,
        m1.timestamp,
        None,
        Some(&packed),
    )
    .unwrap();
    assert_eq!(validate(&odd).unwrap().records, 5);
    assert_eq!(
        decode_records(&odd, 0).unwrap(),
        decode_records(&v1, 0).unwrap()
    );
}

// spec: STO-17
#[test]
fn snappy_entries_use_xerial_framing() {
    let buf = build(2, Codec::Snappy, 0, &sample(5, false));
    assert_eq!(&v2::records_section(&buf)[..8], &XERIAL_MAGIC);
}

// spec: STO-28
#[test]
fn down_conversion_keeps_offsets_and_codec_and_drops_headers() {
    for codec in Codec::ALL {
        let inputs = sample(12, true);
        // A compacted batch: offsets with gaps.
        let mut b = BatchBuilder::new(2, codec, 0).unwrap();
        for (i, r) in inputs.iter().enumerate() {
            let headers: Vec<HeaderRef<'_>> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect();
            b.append_with_offset(
                100 + 3 * i as i64,
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                &headers,
            )
            .unwrap();
        }
        let batch = b.build().unwrap();
        let original = decode_records(&batch, 0).unwrap();
        for target in [0u8, 1] {
            let mut out = Vec::new();
            down_convert(&batch, target, &mut out, DEFAULT_MAX_DECOMPRESSED_BYTES).unwrap();
            let (entries, err) = scan_entries(&out);
            assert!(err.is_none());
            assert!(entries.iter().all(|e| e.magic == target));
            let got = decode_records(&out, 0).unwrap();
            assert_eq!(got.len(), original.len());
            for (g, o) in got.iter().zip(&original) {
                assert_eq!(
                    (g.offset, &g.key, &g.value),
                    (o.offset, &o.key, &o.value),
                    "{codec} -> v{target}"
                );
                assert!(g.headers.is_empty());
                assert_eq!(
                    g.timestamp,
                    if target == 0 {
                        NO_TIMESTAMP
                    } else {
                        o.timestamp
                    }
                );
            }
            let m = legacy::parse_message(&out).unwrap();
            let want = if codec == Codec::Zstd {
                Codec::None
            } else {
                codec
            };
            assert_eq!(m.codec().unwrap(), want, "{codec} -> v{target}");
        }
    }
}

// spec: STO-29
#[test]
fn up_conversion_yields_only_v2_with_the_same_records() {
    let mut legacy_log = Vec::new();
    let mut base = 0;
    for (magic, codec) in formats().filter(|(m, _)| *m < 2) {
        legacy_log.extend(build(magic, codec, base, &sample(6, false)));
        base += 6;
    }
    let v2_tail = build(2, Codec::Zstd, base, &sample(6, true));
    legacy_log.extend(&v2_tail);
    let mut out = Vec::new();
    up_convert(&legacy_log, &mut out, DEFAULT_MAX_DECOMPRESSED_BYTES).unwrap();
    let (entries, err) = scan_entries(&out);
    assert!(err.is_none());
    assert!(entries.iter().all(|e| e.magic == 2));
    assert!(out.ends_with(&v2_tail), "v2 batches pass through unchanged");
    let before = decode_records(&legacy_log, 0).unwrap();
    let after = decode_records(&out, 0).unwrap();
    assert_eq!(after, before);
    // Uncompressed runs are gathered: v0 none (6 messages) → one batch.
    assert_eq!(entries[0].last_offset - entries[0].base_offset, 5);
}

// spec: STO-27
#[test]
fn builders_refuse_what_a_format_cannot_hold() {
    assert!(matches!(
        BatchBuilder::new(1, Codec::Zstd, 0),
        Err(RecordError::UnsupportedCodec { .. })
    ));
    assert!(matches!(
        BatchBuilder::new(3, Codec::None, 0),
        Err(RecordError::UnknownMagic(3))
    ));
    let mut b = BatchBuilder::new(1, Codec::None, 0).unwrap();
    assert!(b.append(0, None, None, &[("h", None)]).is_err());
    b.append(0, None, None, &[]).unwrap();
    assert!(
        b.append_with_offset(0, 0, None, None, &[]).is_err(),
        "offsets must increase"
    );
    assert!(
        BatchBuilder::new(2, Codec::None, 0)
            .unwrap()
            .build()
            .is_err(),
        "empty batch"
    );
}

/// Payloads from another client's record builders (see the file's header).
const KAFKA_PYTHON: &str = include_str!("testdata/kafka_python.txt");

// spec: STO-11, STO-12, STO-17, STO-18, STO-20, STO-23
#[test]
fn payloads_from_kafka_python_validate_assign_and_decode() {
    let mut validator = Validator::default();
    let mut seen = 0;
    for line in KAFKA_PYTHON.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split(' ');
        let magic: u8 = parts.next().unwrap().parse().unwrap();
        let codec = Codec::from_id(parts.next().unwrap().parse().unwrap(), magic).unwrap();
        let mut buf = hex(parts.next().unwrap());
        let s = validator.validate(&buf).unwrap();
        assert_eq!(
            (s.records, s.single_magic()),
            (3, Some(magic)),
            "{magic}/{codec}"
        );
        assert!(s.uses(codec), "{magic}/{codec} should arrive compressed");
        let (_, a) = validator
            .validate_and_assign(&mut buf, 500, 1, None)
            .unwrap();
        assert_eq!((a.first_offset, a.last_offset), (500, 502));
        let want_max = if magic == 0 {
            NO_TIMESTAMP
        } else {
            1_600_000_000_002
        };
        assert_eq!(a.max_timestamp, want_max, "{magic}/{codec}");
        let (entries, err) = scan_entries(&buf);
        assert!(err.is_none());
        assert_eq!(
            entries.last().unwrap().max_timestamp,
            want_max,
            "{magic}/{codec}: header"
        );
        let got = decode_records(&buf, 0).unwrap();
        let want: Vec<Input> = (0..3)
            .map(|i| Input {
                timestamp: 1_600_000_000_000 + i as i64,
                key: (i != 0).then(|| format!("k{i}").into_bytes()),
                value: Some(format!("value-{i} ").repeat(i + 12).into_bytes()),
                headers: if i == 1 {
                    vec![]
                } else {
                    vec![("h".into(), Some(format!("x{i}").into_bytes()))]
                },
            })
            .collect();
        assert_eq!(got, expected(magic, 500, &want, None), "{magic}/{codec}");
        seen += 1;
    }
    assert_eq!(seen, 13, "every format and codec");
}

// spec: STO-23
#[test]
fn the_produce_path_corrects_a_wrong_max_timestamp() {
    let inputs = sample(5, false);
    let mut buf = build(2, Codec::None, 0, &inputs);
    buf[v2::MAX_TIMESTAMP_OFFSET..v2::MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&0i64.to_be_bytes());
    v2::rewrite_crc(&mut buf);
    let mut plain = buf.clone();
    assert_eq!(
        assign_offsets(&mut plain, 0, 0, None)
            .unwrap()
            .max_timestamp,
        0,
        "header trusted"
    );
    let (s, a) = Validator::default()
        .validate_and_assign(&mut buf, 0, 0, None)
        .unwrap();
    let want = inputs.iter().map(|r| r.timestamp).max().unwrap();
    assert_eq!((s.max_timestamp, a.max_timestamp), (want, want));
    assert_eq!(parse_entry(&buf).unwrap().max_timestamp, want);
}

// spec: STO-13
#[test]
fn attribute_bits_round_trip() {
    let mut b = BatchBuilder::new(2, Codec::Snappy, 0)
        .unwrap()
        .transactional(true)
        .timestamp_type(TimestampType::LogAppendTime)
        .producer(5, 1, 0);
    b.append(77, None, Some(b"v"), &[]).unwrap();
    let buf = b.build().unwrap();
    let (h, _) = v2::BatchHeader::parse(&buf).unwrap();
    assert_eq!(
        h.attributes, 0b0001_1010,
        "snappy, log-append time, transactional"
    );
    assert!(h.is_transactional() && !h.is_control());
    assert_eq!(h.codec().unwrap(), Codec::Snappy);
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    let r = decode_records(&buf, 0).unwrap();
    assert_eq!(
        (r[0].timestamp, r[0].timestamp_type),
        (77, TimestampType::LogAppendTime)
    );
    let mut v1 = BatchBuilder::new(1, Codec::Gzip, 0)
        .unwrap()
        .timestamp_type(TimestampType::LogAppendTime);
    v1.append(88, None, Some(b"v"), &[]).unwrap();
    let m = v1.build().unwrap();
    assert_eq!(m[legacy::ATTRIBUTES_OFFSET], 0x08 | 1);
}

#[test]
fn one_huge_batch_does_not_pin_the_validators_memory() {
    let big = vec![7u8; 8 << 20];
    let mut b = BatchBuilder::new(2, Codec::Lz4, 0).unwrap();
    b.append(0, None, Some(&big), &[]).unwrap();
    let mut v = Validator::default();
    assert_eq!(v.validate(&b.build().unwrap()).unwrap().records, 1);
    assert!(v.scratch_capacity() <= validate::SCRATCH_KEEP_BYTES);
    let small = build(2, Codec::Lz4, 0, &sample(3, false));
    assert_eq!(v.validate(&small).unwrap().records, 3);
}
