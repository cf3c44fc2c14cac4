//! Offset-index lookups: a full 10 MiB index (1,310,720 entries) searched
//! at random offsets, and a log read at a random offset (index lookup plus
//! the short header scan). Figures and the command are in
//! `docs/benchmarks.md`.

#[path = "../tests/storage_support/mod.rs"]
mod storage_support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gregor_runtime::storage::config::LogConfig;
use gregor_runtime::storage::index::OffsetIndex;
use gregor_runtime::storage::log::{Log, OpenOptions};
use storage_support::v2_batch;

const NOW: i64 = 1_700_000_000_000;

/// A small xorshift generator: the bench needs spread, not quality.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("00000000000000000000.index");
    let bytes = 10 * 1024 * 1024;
    let entries = bytes / 8;
    let idx = OffsetIndex::open(&path, 0, bytes, 0).expect("index");
    for i in 0..entries {
        idx.append(i as i64 * 40 + 3, (i as u32 + 1) * 700);
    }
    let max = entries as u64 * 40;
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    c.bench_function("index/lookup_full_10MiB", |b| {
        b.iter(|| black_box(idx.lookup((next(&mut s) % max) as i64)));
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::default();
    let mut log = Log::open(
        dir.path(),
        config,
        OpenOptions {
            recovery_point: None,
            log_start: None,
            clean_shutdown: true,
            now_ms: NOW,
        },
    )
    .expect("log");
    // 64 MiB of 1 KiB batches of 10 records: an index entry every ~4 batches.
    let mut b = v2_batch(0, 10, 90, 0, NOW);
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs each
    // benchmark once, on small data.
    let prefill: usize = if std::env::args().any(|a| a == "--bench") {
        64 << 20
    } else {
        2 << 20
    };
    for _ in 0..prefill / b.len() {
        let leo = log.log_end();
        b[..8].copy_from_slice(&leo.to_be_bytes());
        log.append(&b, NOW).expect("append");
    }
    let end = log.log_end() as u64;
    c.bench_function("index/log_read_locate_1KiB_batches", |bch| {
        bch.iter(|| black_box(log.read((next(&mut s) % end) as i64, 1).expect("read")));
    });
}

criterion_group!(benches, lookup);
criterion_main!(benches);
