//! Model-based property test: random sequences of append, roll, truncate,
//! retention and reopen (clean and unclean) against an in-memory reference
//! log; after every step the log's start, end and every read agree with
//! the reference, offsets and bytes (spec: STO-40 … STO-58).

mod storage_support;

use std::path::Path;

use gregor_runtime::storage::config::LogConfig;
use gregor_runtime::storage::log::{Log, OpenOptions};
use proptest::prelude::*;
use storage_support::{read_all, v1_message, v2_batch};

const NOW: i64 = 1_700_000_000_000;

#[derive(Clone, Debug)]
enum Op {
    /// Append a v2 batch (records, value length, epoch bump) or a v1 message.
    Append {
        records: usize,
        value_len: usize,
        bump: i32,
        legacy: bool,
    },
    Roll,
    /// Truncate to a point chosen as a fraction of [start - 2, end].
    Truncate(f64),
    /// Move the log start to a fraction of [start, end], then retention.
    AdvanceStart(f64),
    /// Size retention with a limit of this many bytes.
    RetainBytes(u64),
    /// Time retention: everything older than the entry at this fraction.
    RetainTime(f64),
    Reopen {
        clean: bool,
    },
    /// Read from a fraction of [start, end) with this max_bytes.
    Read(f64, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6, 0usize..80, 0i32..2, prop::bool::weighted(0.1))
            .prop_map(|(records, value_len, bump, legacy)| Op::Append { records, value_len, bump, legacy }),
        1 => Just(Op::Roll),
        1 => (0.0f64..1.0).prop_map(Op::Truncate),
        1 => (0.0f64..1.0).prop_map(Op::AdvanceStart),
        1 => (0u64..3000).prop_map(Op::RetainBytes),
        1 => (0.0f64..1.0).prop_map(Op::RetainTime),
        1 => prop::bool::ANY.prop_map(|clean| Op::Reopen { clean }),
        2 => (0.0f64..1.0, 1usize..2000).prop_map(|(f, m)| Op::Read(f, m)),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_size_max_bytes: 96,
        index_interval_bytes: 150,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// The reference: entries (base, last, timestamp, bytes) and the log start.
#[derive(Default)]
struct Reference {
    entries: Vec<(i64, i64, i64, Vec<u8>)>,
    start: i64,
    end: i64,
}

impl Reference {
    /// Entries a reader may see: those ending at or after the start.
    fn visible(&self) -> Vec<(i64, Vec<u8>)> {
        self.entries
            .iter()
            .filter(|e| e.1 >= self.start)
            .map(|e| (e.0, e.3.clone()))
            .collect()
    }
}

fn open(dir: &Path, clean: bool, start: i64) -> Log {
    let opts = OpenOptions {
        recovery_point: None,
        log_start: Some(start),
        clean_shutdown: clean,
        now_ms: NOW,
    };
    Log::open(dir, config(), opts).expect("open")
}

fn check(log: &Log, r: &Reference) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_end(), r.end);
    prop_assert_eq!(log.log_start(), r.start);
    prop_assert_eq!(log.meta().log_end().get(), r.end);
    prop_assert_eq!(log.meta().log_start().get(), r.start);
    prop_assert_eq!(read_all(log, r.start, 1 << 20), r.visible());
    log.verify_indexes()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let tmp = storage_support::tempdir();
    let dir = tmp.path();
    let mut log = Some(open(dir, true, 0));
    let mut r = Reference::default();
    let mut epoch = 0;
    let mut ts = 0i64;
    for op in ops {
        let l = log.as_mut().expect("open log");
        match *op {
            Op::Append {
                records,
                value_len,
                bump,
                legacy,
            } => {
                epoch += bump;
                ts += 10;
                let e = if legacy {
                    v1_message(r.end, value_len, ts)
                } else {
                    v2_batch(r.end, records, value_len, epoch, ts)
                };
                let info = l
                    .append(&e, NOW)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(info.first_offset, r.end);
                let last = info.last_offset;
                r.entries.push((r.end, last, info.max_timestamp, e));
                r.end = last + 1;
            }
            Op::Roll => l.roll(NOW).unwrap(),
            Op::Truncate(f) => {
                let lo = r.start - 2;
                let target = lo + ((r.end - lo) as f64 * f) as i64;
                let end = l.truncate_to(target.max(0)).unwrap();
                let target = target.max(0);
                if target < r.start {
                    r.entries.clear();
                    r.start = target;
                    r.end = target;
                } else if target < r.end {
                    let keep = r.entries.iter().take_while(|e| e.1 < target).count();
                    r.entries.truncate(keep);
                    r.end = r.entries.last().map_or(r.start, |e| e.1 + 1).max(r.start);
                    if r.entries.is_empty() {
                        // Everything from the first segment's base went.
                        r.end = end;
                    }
                }
                prop_assert_eq!(end, r.end);
            }
            Op::AdvanceStart(f) => {
                let target = r.start + ((r.end - r.start) as f64 * f) as i64;
                l.advance_start(target, NOW).unwrap();
                r.start = r.start.max(target);
                l.delete_old_segments(NOW).unwrap();
            }
            Op::RetainBytes(limit) => {
                let mut c = config();
                c.retention_bytes = Some(limit);
                let mut keep = log.take().unwrap();
                // First drop segments wholly below the start (no size limit
                // yet), so that what follows is size retention alone.
                keep.delete_old_segments(NOW).unwrap();
                keep.close(NOW).unwrap();
                let mut l2 = Log::open(
                    dir,
                    c,
                    OpenOptions {
                        recovery_point: None,
                        log_start: Some(r.start),
                        clean_shutdown: true,
                        now_ms: NOW,
                    },
                )
                .unwrap();
                let before = l2.size_bytes();
                l2.delete_old_segments(NOW).unwrap();
                prop_assert!(
                    l2.size_bytes() >= limit.min(before),
                    "size retention never goes below the limit"
                );
                // The new start is the first kept segment's base.
                let new_start = l2.log_start();
                prop_assert!(new_start >= r.start && new_start <= r.end);
                prop_assert!(
                    new_start == r.start
                        || r.entries.iter().any(|e| e.0 == new_start)
                        || new_start == r.end
                );
                r.start = new_start;
                l2.close(NOW).unwrap();
                log = Some(open(dir, true, r.start));
            }
            Op::RetainTime(f) => {
                if let Some(e) = r.entries.get(((r.entries.len() as f64) * f) as usize) {
                    let mut c = config();
                    c.retention_ms = Some(1);
                    let keep = log.take().unwrap();
                    keep.close(NOW).unwrap();
                    let mut l2 = Log::open(
                        dir,
                        c,
                        OpenOptions {
                            recovery_point: None,
                            log_start: Some(r.start),
                            clean_shutdown: true,
                            now_ms: NOW,
                        },
                    )
                    .unwrap();
                    let cutoff_ts = e.2;
                    l2.delete_old_segments(cutoff_ts + 1).unwrap();
                    let new_start = l2.log_start();
                    // Every entry older than the cutoff may go, never a newer one.
                    let dropped = r
                        .entries
                        .iter()
                        .filter(|x| x.1 >= r.start && x.1 < new_start);
                    prop_assert!(dropped.clone().all(|x| x.2 < cutoff_ts));
                    r.start = r.start.max(new_start);
                    l2.close(NOW).unwrap();
                    log = Some(open(dir, true, r.start));
                }
            }
            Op::Reopen { clean } => {
                let keep = log.take().unwrap();
                if clean {
                    keep.close(NOW).unwrap()
                } else {
                    drop(keep)
                }
                log = Some(open(dir, clean, r.start));
            }
            Op::Read(f, max) => {
                if r.end > r.start {
                    let o = r.start + ((r.end - r.start) as f64 * f) as i64;
                    let range = l.read(o, max).unwrap().expect("data below the end");
                    let i = r.entries.iter().position(|e| e.1 >= o).unwrap();
                    prop_assert_eq!(range.first_offset, r.entries[i].0);
                    let mut total = r.entries[i].3.len();
                    let mut j = i + 1;
                    // Whole entries of the same segment up to max_bytes.
                    while j < r.entries.len()
                        && total + r.entries[j].3.len() <= max
                        && (range.len as usize) > total
                    {
                        total += r.entries[j].3.len();
                        j += 1;
                    }
                    prop_assert_eq!(range.len as usize, total);
                    prop_assert!(range.len as usize <= max.max(r.entries[i].3.len()));
                }
            }
        }
        check(log.as_ref().unwrap(), &r)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn log_agrees_with_reference(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops)?;
    }
}
