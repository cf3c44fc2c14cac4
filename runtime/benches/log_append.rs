//! Append and read throughput of a partition log: 16 KiB v2 batches of
//! 100-byte records written into the page cache, and sequential fetch-sized
//! reads. Figures and the command are in `docs/benchmarks.md`.

#[path = "../tests/storage_support/mod.rs"]
mod storage_support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gregor_runtime::storage::config::LogConfig;
use gregor_runtime::storage::log::{Log, OpenOptions};
use storage_support::v2_batch;

const NOW: i64 = 1_700_000_000_000;
/// Target batch size.
const BATCH_BYTES: usize = 16 * 1024;
/// Record value size.
const RECORD_BYTES: usize = 100;
/// The bench restarts the log once it holds this much, so that a run does
/// not fill the disk (the restart is timed, like retention would be).
const MAX_LOG_BYTES: u64 = 512 << 20;

/// Whether this is a real benchmark run (`cargo bench` passes `--bench`);
/// `cargo test --all-targets` runs each benchmark once, on small data.
fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A directory on the disk that holds the build (`/tmp` may be tmpfs).
fn disk_tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

/// A v2 batch of 100-byte records no larger than 16 KiB.
fn batch() -> Vec<u8> {
    let mut n = BATCH_BYTES / RECORD_BYTES;
    loop {
        let b = v2_batch(0, n, RECORD_BYTES, 0, NOW);
        if b.len() <= BATCH_BYTES {
            return b;
        }
        n -= 1;
    }
}

fn open(dir: &std::path::Path) -> Log {
    let config = LogConfig {
        segment_bytes: 128 << 20,
        ..LogConfig::default()
    };
    Log::open(
        dir,
        config,
        OpenOptions {
            recovery_point: None,
            log_start: None,
            clean_shutdown: true,
            now_ms: NOW,
        },
    )
    .expect("open log")
}

/// Appends 16 KiB batches to a log in `dir`, restarting it every
/// [`MAX_LOG_BYTES`].
fn bench_append(c: &mut Criterion, name: &str, dir: &std::path::Path) {
    let mut log = open(dir);
    let mut b = batch();
    let records = i64::from(i32::from_be_bytes(b[57..61].try_into().unwrap()));
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(name, |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let leo = log.log_end();
                // Offsets are assigned by patching the base offset, outside the CRC.
                b[..8].copy_from_slice(&leo.to_be_bytes());
                black_box(log.append(&b, NOW).expect("append"));
                if log.size_bytes() > MAX_LOG_BYTES {
                    log.truncate_fully_and_start_at(leo + records, NOW)
                        .expect("restart");
                }
            }
            start.elapsed()
        });
    });
    g.finish();
}

fn append(c: &mut Criterion) {
    // The validation alone (framing + CRC32C of the whole batch), the part
    // of an append that does not touch the file.
    let b = batch();
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("validate_16KiB_batch", |bench| {
        bench.iter(|| {
            black_box(gregor_runtime::storage::record::parse_entry(black_box(&b)).expect("valid"))
        });
    });
    g.finish();

    // Baseline: the bare positional writes of the same bytes to one file,
    // restarted like the log; what the page cache itself costs here.
    let dir = disk_tempdir();
    let path = dir.path().join("raw.log");
    let mut file = std::fs::File::create(&path).expect("create");
    let mut pos = 0u64;
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("raw_pwrite_16KiB", |bench| {
        bench.iter(|| {
            std::os::unix::fs::FileExt::write_all_at(&file, &b, pos).expect("write");
            pos += b.len() as u64;
            if pos > MAX_LOG_BYTES {
                drop(std::fs::remove_file(&path));
                file = std::fs::File::create(&path).expect("create");
                pos = 0;
            }
        });
    });
    g.finish();
    // A disk file system (the build's target directory), writes landing in
    // the page cache.
    let dir = disk_tempdir();
    bench_append(c, "append_16KiB_batch", dir.path());
    // tmpfs, when present: the same page-cache write without a disk file
    // system's block allocation, to separate the log's own cost.
    if let Ok(dir) = tempfile::tempdir_in("/dev/shm") {
        bench_append(c, "append_16KiB_batch_tmpfs", dir.path());
    }
}

fn read(c: &mut Criterion) {
    let dir = disk_tempdir();
    let mut log = open(dir.path());
    let mut b = batch();
    let records = i64::from(i32::from_be_bytes(b[57..61].try_into().unwrap()));
    let prefill: usize = if full_run() { 256 << 20 } else { 4 << 20 };
    for _ in 0..prefill / b.len() {
        let leo = log.log_end();
        b[..8].copy_from_slice(&leo.to_be_bytes());
        log.append(&b, NOW).expect("append");
    }
    let end = log.log_end();
    let reader = log.reader();
    let mut buf = Vec::with_capacity(2 << 20);
    let mut next = 0;
    let mut g = c.benchmark_group("log");
    g.measurement_time(Duration::from_secs(5));
    for max_bytes in [64 * 1024, 1 << 20] {
        // Bytes per read: whole 16 KiB batches up to max_bytes.
        let per_read = (max_bytes / b.len()).max(1) * b.len();
        g.throughput(Throughput::Bytes(per_read as u64));
        g.bench_function(format!("read_{}KiB", max_bytes / 1024), |bench| {
            bench.iter(|| {
                if next >= end {
                    next = 0;
                }
                let r = reader.read(next, max_bytes).expect("read").expect("data");
                buf.clear();
                r.read_into(&mut buf).expect("read range");
                next = r.first_offset + (r.len as usize / b.len()) as i64 * records;
                black_box(&buf);
            });
        });
    }
    g.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
