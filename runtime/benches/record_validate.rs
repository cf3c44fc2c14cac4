//! The produce path for one 16 KiB v2 batch of 100-byte records:
//! validation (checksum, record walk, decompression for lz4) followed by
//! offset assignment. Run with
//! `CARGO_TARGET_DIR=/work/target cargo bench -p runtime --bench record_validate`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

criterion_group!(benches, bench);
criterion_main!(benches);
