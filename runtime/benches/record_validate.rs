//! The produce path for one 16 KiB v2 batch of 100-byte records:
//! validation (checksum, record walk, decompression for lz4) followed by
//! offset assignment, and the options for checking the records of an
//! uncompressed batch (spec: STO-90): the full record walk, the framing
//! pass, the record-length chain alone and the CRC32C alone. Run with
//! `CARGO_TARGET_DIR=/work/target cargo bench -p runtime --bench record_validate`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gregor_runtime::storage::record::v2::{self, BatchHeader, RecordWalker};
use gregor_runtime::storage::record::varint::read_varint;
use gregor_runtime::storage::record::{BatchBuilder, Codec, Validator};
use std::hint::black_box;

/// Target size of the batch, as producers send with `batch.size=16384`.
const BATCH_BYTES: usize = 16 * 1024;
/// Value size of each record.
const VALUE_BYTES: usize = 100;

fn batch(codec: Codec) -> (Vec<u8>, usize) {
    let mut b = BatchBuilder::new(2, codec, 0).unwrap().producer(7, 0, 0);
    let mut uncompressed = 0;
    let mut i = 0u64;
    while uncompressed + VALUE_BYTES + 16 <= BATCH_BYTES {
        // Printable, mildly repetitive values, like JSON or log lines.
        let value: Vec<u8> =
            format!("{i:08} {}", "payload-".repeat(12)).into_bytes()[..VALUE_BYTES].to_vec();
        b.append(1_700_000_000_000 + i as i64, None, Some(&value), &[])
            .unwrap();
        uncompressed += VALUE_BYTES + 10;
        i += 1;
    }
    let n = b.len();
    (b.build().unwrap(), n)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_validate");
    // Throughput counts the uncompressed batch bytes, so the two codecs
    // compare on the data the producer sent.
    let plain_bytes = batch(Codec::None).0.len() as u64;
    for codec in [Codec::None, Codec::Lz4] {
        let (mut buf, records) = batch(codec);
        let mut validator = Validator::default();
        eprintln!(
            "{codec}: {records} records, {} bytes on the wire",
            buf.len()
        );
        group.throughput(Throughput::Bytes(plain_bytes));
        group.bench_function(format!("validate_assign_{codec}"), |b| {
            let mut next = 0i64;
            b.iter(|| {
                let (s, a) = validator
                    .validate_and_assign(black_box(&mut buf), next, 3, None)
                    .unwrap();
                next = a.last_offset + 1;
                black_box((s, a))
            });
        });
    }
    group.finish();
}

/// The record-check options on the records section of the uncompressed
/// batch, each returning what the produce path needs (timestamp bounds).
fn walks(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_walk");
    let (buf, _) = batch(Codec::None);
    let (h, _) = BatchHeader::parse(&buf).unwrap();
    let section = v2::records_section(&buf);
    group.throughput(Throughput::Bytes(buf.len() as u64));
    // The walk the validator used before STO-90: every record parsed into a
    // view (key, value, headers split out), offset deltas checked.
    group.bench_function("full_walk", |b| {
        b.iter(|| {
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            for (i, r) in RecordWalker::new(black_box(section), h.records_count).enumerate() {
                let r = r.unwrap();
                assert_eq!(i64::from(r.offset_delta), i as i64);
                lo = lo.min(r.timestamp_delta);
                hi = hi.max(r.timestamp_delta);
            }
            black_box((lo, hi))
        });
    });
    // The framing pass the validator uses (spec: STO-90).
    group.bench_function("framing_pass", |b| {
        b.iter(|| v2::check_records(black_box(section), h.records_count).unwrap());
    });
    // Only the chain of record lengths (count and total size): cheaper,
    // but it neither sees timestamps nor proves a record splits into
    // fields, so it is a lower bound, not an option.
    group.bench_function("length_chain_only", |b| {
        b.iter(|| {
            let s = black_box(section);
            let mut pos = 0;
            for _ in 0..h.records_count {
                let len = read_varint(s, &mut pos).unwrap();
                pos += len as usize;
            }
            assert_eq!(pos, s.len());
        });
    });
    // The CRC32C over the batch, which the produce path computes anyway.
    group.bench_function("crc32c_only", |b| {
        b.iter(|| crc32c::crc32c(black_box(&buf[v2::ATTRIBUTES_OFFSET..])));
    });
    group.finish();
}

criterion_group!(benches, bench, walks);
criterion_main!(benches);
