//! Behaviour of one partition log: appends, reads, rolls, truncation,
//! timestamp lookup, retention, flushing and index recovery.

mod storage_support;

use std::fs;

use gregor_core::ids::{LeaderEpoch, Offset};
use gregor_core::log::EpochEntry;
use gregor_runtime::storage::checkpoint;
use gregor_runtime::storage::config::LogConfig;
use gregor_runtime::storage::error::StorageError;
use gregor_runtime::storage::segment::file_name;
use storage_support::{open_log, read_all, small_config, v1_message, v2_batch};

const NOW: i64 = 1_700_000_000_000;

/// STO-40, STO-46: appends are readable back byte for byte; a read starts
/// at the entry holding the offset and returns at least one whole entry.
#[test]
fn append_then_read_returns_whole_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), LogConfig::default(), true, NOW);
    let mut batches = Vec::new();
    for i in 0..20 {
        let b = v2_batch(i * 5, 5, 100, 0, NOW + i);
        let info = log.append(&b, NOW).unwrap();
        assert_eq!((info.first_offset, info.last_offset), (i * 5, i * 5 + 4));
        batches.push(b);
    }
    assert_eq!(log.log_end(), 100);
    let all = read_all(&log, 0, 1 << 20);
    assert_eq!(all.len(), 20);
    for (i, (base, bytes)) in all.iter().enumerate() {
        assert_eq!(*base, i as i64 * 5);
        assert_eq!(bytes, &batches[i]);
    }
    // An offset inside a batch returns that whole batch first.
    let r = log.read(13, 1).unwrap().unwrap();
    assert_eq!(r.first_offset, 10);
    assert_eq!(
        r.len as usize,
        batches[2].len(),
        "max_bytes smaller than one entry still returns it"
    );
    // max_bytes caps the range at whole entries.
    let r = log.read(0, batches[0].len() * 3 + 10).unwrap().unwrap();
    assert_eq!(r.len as usize, batches[0].len() * 3);
    assert!(
        log.read(100, 100).unwrap().is_none(),
        "reading at the end is empty"
    );
    assert!(matches!(
        log.read(101, 100),
        Err(StorageError::OffsetOutOfRange { offset: 101, .. })
    ));
}

/// STO-40: invalid, out-of-order or epoch-regressing appends are refused
/// with typed errors and write nothing.
#[test]
fn bad_appends_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), LogConfig::default(), true, NOW);
    log.append(&v2_batch(0, 3, 10, 5, NOW), NOW).unwrap();
    let size = log.size_bytes();
    assert!(matches!(
        log.append(&v2_batch(4, 1, 10, 5, NOW), NOW),
        Err(StorageError::NonContiguous {
            expected: 3,
            got: 4
        })
    ));
    let mut corrupt = v2_batch(3, 2, 10, 5, NOW);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    // A good batch followed by a corrupt one: the whole append is refused.
    let mut two = v2_batch(3, 1, 10, 5, NOW);
    two.extend_from_slice(&v2_batch(4, 1, 10, 5, NOW)[..30]);
    for bad in [corrupt, two] {
        assert!(matches!(
            log.append(&bad, NOW),
            Err(StorageError::InvalidEntry { .. })
        ));
    }
    assert!(matches!(
        log.append(&v2_batch(3, 1, 10, 4, NOW), NOW),
        Err(StorageError::Meta(_))
    ));
    assert!(matches!(
        log.append(&[], NOW),
        Err(StorageError::EmptyAppend)
    ));
    assert_eq!(log.size_bytes(), size);
    assert_eq!(log.log_end(), 3);
    // Legacy v1 messages continue the log and the latest epoch.
    log.append(&v1_message(3, 20, NOW), NOW).unwrap();
    assert_eq!(log.log_end(), 4);
    assert_eq!(read_all(&log, 0, 1 << 20).len(), 2);
}

/// STO-41: a segment rolls before it would exceed `log.segment.bytes`; the
/// sealed segment's indexes are trimmed, the active ones preallocated.
#[test]
fn rolls_on_segment_size_and_trims_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    };
    let mut log = open_log(dir.path(), config, true, NOW);
    let batch_len = v2_batch(0, 10, 100, 0, NOW).len();
    let mut next = 0;
    let mut rolled = 0;
    for _ in 0..12 {
        let info = log.append(&v2_batch(next, 10, 100, 0, NOW), NOW).unwrap();
        rolled += usize::from(info.rolled);
        next += 10;
    }
    let per_segment = 4096 / batch_len;
    assert_eq!(log.segment_bases().len(), 12usize.div_ceil(per_segment));
    assert_eq!(rolled, log.segment_bases().len() - 1);
    for (i, base) in log.segment_bases().iter().enumerate() {
        let seg_len = fs::metadata(dir.path().join(file_name(*base, ".log")))
            .unwrap()
            .len();
        assert!(seg_len <= 4096, "segment {base} is {seg_len} bytes");
        let idx = fs::metadata(dir.path().join(file_name(*base, ".index")))
            .unwrap()
            .len();
        if i + 1 == log.segment_bases().len() {
            assert_eq!(idx, 10 * 1024 * 1024, "STO-32: active index preallocated");
        } else {
            assert!(
                idx < 1024 && idx.is_multiple_of(8) && idx > 0,
                "STO-41: sealed index trimmed to {idx}"
            );
        }
    }
    log.verify_indexes().unwrap();
    assert_eq!(read_all(&log, 0, 1 << 20).len(), 12);
}

/// STO-42: `log.roll.ms` rolls a segment whose first entry is too old
/// compared with the incoming entry; without timestamps the segment's age
/// counts.
#[test]
fn rolls_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        roll_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = open_log(dir.path(), config.clone(), true, NOW);
    log.append(&v2_batch(0, 1, 10, 0, 5000), NOW).unwrap();
    assert!(
        !log.append(&v2_batch(1, 1, 10, 0, 5999), NOW + 5000)
            .unwrap()
            .rolled
    );
    assert!(
        log.append(&v2_batch(2, 1, 10, 0, 6000), NOW)
            .unwrap()
            .rolled
    );
    assert_eq!(log.segment_bases(), vec![0, 2]);
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), config, true, NOW);
    log.append(&v2_batch(0, 1, 10, 0, -1), NOW).unwrap();
    assert!(
        !log.append(&v2_batch(1, 1, 10, 0, -1), NOW + 999)
            .unwrap()
            .rolled
    );
    assert!(
        log.append(&v2_batch(2, 1, 10, 0, -1), NOW + 1000)
            .unwrap()
            .rolled
    );
}

/// STO-41: a full offset or time index rolls the segment.
#[test]
fn rolls_on_full_index() {
    let dir = tempfile::tempdir().unwrap();
    // 24 bytes: 3 offset entries or 2 time entries; every append indexed.
    let config = LogConfig {
        index_size_max_bytes: 24,
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let mut log = open_log(dir.path(), config, true, NOW);
    for i in 0..10 {
        log.append(&v2_batch(i, 1, 10, 0, NOW + i), NOW).unwrap();
    }
    let bases = log.segment_bases();
    assert!(bases.len() >= 3, "{bases:?}");
    assert_eq!(
        bases[1], 3,
        "the first segment holds its unindexed first entry and two indexed ones"
    );
    log.verify_indexes().unwrap();
    assert_eq!(read_all(&log, 0, 10).len(), 10);
}

/// STO-47: ListOffsets by timestamp finds the first record whose timestamp
/// reaches the target — inside a batch, not just the batch — across segments.
#[test]
fn timestamp_lookup_finds_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), small_config(), true, NOW);
    // Batch i holds offsets 4i..4i+3 with timestamps 1000i .. 1000i+3.
    for i in 0..40 {
        log.append(&v2_batch(i * 4, 4, 20, 0, i * 1000), NOW)
            .unwrap();
    }
    assert!(log.segment_bases().len() > 3);
    for target in [0, 1, 3, 4, 999, 1000, 17_500, 17_002, 39_003] {
        let hit = log.offset_for_timestamp(target).unwrap().unwrap();
        let (offset, timestamp) = if target % 1000 <= 3 {
            (target / 1000 * 4 + target % 1000, target)
        } else {
            ((target / 1000 + 1) * 4, (target / 1000 + 1) * 1000)
        };
        assert_eq!(
            (hit.offset, hit.timestamp),
            (offset, timestamp),
            "target {target}"
        );
    }
    assert_eq!(log.offset_for_timestamp(39_004).unwrap(), None);
}

/// STO-44: truncation cuts at an entry boundary, also inside an older
/// segment, deletes later segments, and the log continues from there.
#[test]
fn truncate_to_cuts_entries_and_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), small_config(), true, NOW);
    for i in 0..60 {
        log.append(&v2_batch(i * 2, 2, 50, i as i32 / 20, NOW), NOW)
            .unwrap();
    }
    let bases = log.segment_bases();
    assert!(bases.len() > 3);
    // Inside a batch: the whole batch holding offset 21 goes.
    let target = bases[1] + 3;
    let end = log.truncate_to(target).unwrap();
    assert_eq!(
        end,
        target - 1,
        "cut at the start of the batch holding {target}"
    );
    assert_eq!(log.segment_bases(), bases[..2].to_vec());
    assert!(!dir.path().join(file_name(bases[2], ".log")).exists());
    assert_eq!(log.meta().log_end(), Offset(end));
    log.verify_indexes().unwrap();
    // The epoch cache and its checkpoint follow.
    let cached = checkpoint::read_epochs(&dir.path().join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(cached, log.meta().epochs().entries());
    assert!(cached.iter().all(|e| e.start_offset.get() < end));
    // Appending continues at the new end.
    log.append(&v2_batch(end, 2, 50, 7, NOW), NOW).unwrap();
    let all = read_all(&log, 0, 1 << 20);
    assert_eq!(all.last().unwrap().0, end);
    assert_eq!(log.meta().latest_epoch(), Some(LeaderEpoch(7)));
    // Truncating everything restarts the log elsewhere.
    log.truncate_fully_and_start_at(1000, NOW).unwrap();
    assert_eq!((log.log_start(), log.log_end()), (1000, 1000));
    assert_eq!(log.segment_bases(), vec![1000]);
    log.append(&v2_batch(1000, 1, 5, 8, NOW), NOW).unwrap();
    assert_eq!(read_all(&log, 1000, 10).len(), 1);
}

/// STO-43: the leader-epoch cache is built from the batches' partition
/// leader epochs and checkpointed in Kafka's format.
#[test]
fn epoch_cache_follows_batches_and_is_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), LogConfig::default(), true, NOW);
    log.append(&v2_batch(0, 3, 10, 1, NOW), NOW).unwrap();
    log.append(&v2_batch(3, 2, 10, 1, NOW), NOW).unwrap();
    log.append(&v2_batch(5, 2, 10, 4, NOW), NOW).unwrap();
    let want = vec![
        EpochEntry {
            epoch: LeaderEpoch(1),
            start_offset: Offset(0),
        },
        EpochEntry {
            epoch: LeaderEpoch(4),
            start_offset: Offset(5),
        },
    ];
    assert_eq!(log.meta().epochs().entries(), want.as_slice());
    let text = fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(text, "0\n2\n1 0\n4 5\n");
    log.close(NOW).unwrap();
    let log = open_log(dir.path(), LogConfig::default(), true, NOW);
    assert_eq!(log.meta().epochs().entries(), want.as_slice());
    assert_eq!(
        log.meta().end_offset_for_epoch(LeaderEpoch(1)),
        Some((LeaderEpoch(1), Offset(5)))
    );
}

/// STO-50: time retention deletes sealed segments whose newest entry is
/// older than retention.ms, never the active one, and moves the log start.
#[test]
fn retention_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: Some(10_000),
        ..small_config()
    };
    let mut log = open_log(dir.path(), config, true, NOW);
    for i in 0..40 {
        log.append(&v2_batch(i * 4, 4, 20, 0, i * 1000), NOW)
            .unwrap();
    }
    let bases = log.segment_bases();
    assert!(bases.len() > 3);
    // At now = 30_000 + 10_000, segments whose newest timestamp is < 30_000 go.
    let deleted = log.delete_old_segments(40_000).unwrap();
    assert!(deleted > 0);
    let kept = log.segment_bases();
    assert_eq!(kept, bases[deleted..].to_vec());
    assert_eq!(log.log_start(), kept[0]);
    assert!(matches!(
        log.read(0, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let first_kept_ts = (kept[0] / 4) * 1000;
    assert!(
        first_kept_ts + 3000 >= 29_000,
        "kept segment starting at {} is still fresh",
        kept[0]
    );
    // Far in the future everything but the active segment goes.
    log.delete_old_segments(i64::MAX / 2).unwrap();
    assert_eq!(log.segment_bases(), vec![*bases.last().unwrap()]);
    assert_eq!(log.log_start(), *bases.last().unwrap());
    assert_eq!(
        read_all(&log, log.log_start(), 1 << 20).last().unwrap().0,
        156
    );
}

/// STO-50: size retention drops the oldest segments while the log stays
/// at or above retention.bytes.
#[test]
fn retention_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(5000),
        ..small_config()
    };
    let mut log = open_log(dir.path(), config, true, NOW);
    for i in 0..60 {
        log.append(&v2_batch(i * 4, 4, 20, 0, NOW), NOW).unwrap();
    }
    let before = log.size_bytes();
    let n = log.delete_old_segments(NOW).unwrap();
    assert!(n > 0);
    assert!(
        log.size_bytes() >= 5000,
        "never below the limit: {}",
        log.size_bytes()
    );
    assert!(
        log.size_bytes() < 5000 + 2048,
        "at most one segment above the limit"
    );
    assert!(log.size_bytes() < before);
    assert_eq!(log.log_start(), log.segment_bases()[0]);
    assert_eq!(log.meta().log_start(), Offset(log.log_start()));
}

/// STO-51: DeleteRecords moves the log start; reads below it fail and the
/// segments wholly below it are deleted by retention.
#[test]
fn advance_start_then_retention_deletes_segments_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), small_config(), true, NOW);
    for i in 0..40 {
        log.append(&v2_batch(i * 4, 4, 20, 0, NOW), NOW).unwrap();
    }
    let bases = log.segment_bases();
    log.advance_start(bases[2] + 1, NOW).unwrap();
    assert!(matches!(
        log.read(bases[2], 10),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.delete_old_segments(NOW).unwrap(), 2);
    assert_eq!(log.log_start(), bases[2] + 1);
    assert_eq!(
        log.read(bases[2] + 1, 10).unwrap().unwrap().first_offset,
        bases[2]
    );
}

/// STO-52: `log.flush.interval.messages` fsyncs and advances the recovery
/// point; by default nothing is fsynced per write.
#[test]
fn flush_policy_moves_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), LogConfig::default(), true, NOW);
    log.append(&v2_batch(0, 10, 10, 0, NOW), NOW).unwrap();
    assert_eq!(log.recovery_point(), 0, "no fsync per write by default");
    let config = LogConfig {
        flush_interval_messages: Some(15),
        ..LogConfig::default()
    };
    let dir2 = tempfile::tempdir().unwrap();
    let mut log = open_log(dir2.path(), config, true, NOW);
    log.append(&v2_batch(0, 10, 10, 0, NOW), NOW).unwrap();
    assert_eq!(log.recovery_point(), 0);
    log.append(&v2_batch(10, 10, 10, 0, NOW), NOW).unwrap();
    assert_eq!(log.recovery_point(), 20);
    let config = LogConfig {
        flush_interval_ms: Some(1000),
        ..LogConfig::default()
    };
    let dir3 = tempfile::tempdir().unwrap();
    let mut log = open_log(dir3.path(), config, true, NOW);
    log.append(&v2_batch(0, 10, 10, 0, NOW), NOW).unwrap();
    assert!(!log.flush_if_due(NOW + 999).unwrap());
    assert!(log.flush_if_due(NOW + 1000).unwrap());
    assert_eq!(log.recovery_point(), 10);
}

/// STO-61: an index found inconsistent on open is rebuilt from the log,
/// even after a clean shutdown.
#[test]
fn inconsistent_index_is_rebuilt_after_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), small_config(), true, NOW);
    for i in 0..40 {
        log.append(&v2_batch(i * 4, 4, 20, 0, i), NOW).unwrap();
    }
    let bases = log.segment_bases();
    log.close(NOW).unwrap();
    // Scribble over the first sealed index and cut the active time index.
    let idx = dir.path().join(file_name(bases[0], ".index"));
    let mut bytes = fs::read(&idx).unwrap();
    assert!(bytes.len() >= 16);
    bytes[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    fs::write(&idx, &bytes).unwrap();
    let tidx = dir
        .path()
        .join(file_name(*bases.last().unwrap(), ".timeindex"));
    let len = fs::metadata(&tidx).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&tidx)
        .unwrap()
        .set_len(len.saturating_sub(5))
        .unwrap();
    let log = open_log(dir.path(), small_config(), true, NOW);
    log.verify_indexes().unwrap();
    assert_eq!(log.log_end(), 160);
    assert_eq!(read_all(&log, 0, 300).len(), 40);
}

/// STO-45: a reader thread polling while the writer appends only ever sees
/// whole, valid entries below the published end.
#[test]
fn concurrent_reader_sees_only_published_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), small_config(), true, NOW);
    let reader = log.reader();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = done.clone();
    let t = std::thread::spawn(move || {
        let mut next = 0;
        let mut buf = Vec::new();
        let mut seen = 0;
        while !done2.load(std::sync::atomic::Ordering::Acquire) || next < reader.log_end() {
            match reader.read(next, 700) {
                Ok(Some(r)) => {
                    buf.clear();
                    r.read_into(&mut buf).unwrap();
                    let mut pos = 0;
                    while pos < buf.len() {
                        let info =
                            gregor_runtime::storage::record::parse_entry(&buf[pos..]).unwrap();
                        assert_eq!(
                            info.base_offset, next,
                            "entries arrive in order, none skipped"
                        );
                        next = info.last_offset + 1;
                        pos += info.size;
                        seen += 1;
                    }
                }
                Ok(None) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        seen
    });
    for i in 0..400 {
        log.append(&v2_batch(i * 3, 3, 30, 0, NOW), NOW).unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(t.join().unwrap(), 400);
}

/// STO-45: a reader's file range stays readable after retention deletes
/// its segment (the range holds the open file).
#[test]
fn range_outlives_its_deleted_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path(), small_config(), true, NOW);
    for i in 0..40 {
        log.append(&v2_batch(i * 4, 4, 20, 0, NOW), NOW).unwrap();
    }
    let first = log.read(0, 1 << 20).unwrap().unwrap();
    let second = log.segment_bases()[1];
    log.advance_start(second, NOW).unwrap();
    assert_eq!(log.delete_old_segments(NOW).unwrap(), 1);
    assert!(!dir.path().join(file_name(0, ".log")).exists());
    let mut buf = Vec::new();
    first.read_into(&mut buf).unwrap();
    let info = gregor_runtime::storage::record::parse_entry(&buf).unwrap();
    assert_eq!(info.base_offset, 0);
    assert_eq!(buf.len() as u64, first.len);
}
