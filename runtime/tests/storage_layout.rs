//! The log manager and the on-disk layout of a log directory.

mod storage_support;

use std::fs;
use std::path::PathBuf;

use gregor_core::ids::TopicPartition;
use gregor_runtime::storage::config::LogConfig;
use gregor_runtime::storage::error::StorageError;
use gregor_runtime::storage::manager::LogManager;
use storage_support::{read_all, v2_batch};

const NOW: i64 = 1_700_000_000_000;

fn demo(p: i32) -> TopicPartition {
    TopicPartition::new("demo", p)
}

/// STO-30, STO-32, STO-70, STO-73, STO-74: three partitions of `demo`
/// produce the seed's layout.
#[test]
fn three_partitions_produce_the_seed_layout() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_path_buf();
    let mut mgr =
        LogManager::open(std::slice::from_ref(&dir), 0, LogConfig::default(), NOW).unwrap();
    for p in 0..3 {
        let log = mgr.create(&demo(p), NOW).unwrap();
        log.append(&v2_batch(0, 100, 100, 0, NOW), NOW).unwrap();
        mgr.set_high_watermark(&demo(p), 100);
    }
    mgr.checkpoint().unwrap();
    for p in 0..3 {
        let part = dir.join(format!("demo-{p}"));
        assert!(part.is_dir());
        let log = part.join("00000000000000000000.log");
        assert!(fs::metadata(&log).unwrap().len() > 10_000);
        assert_eq!(
            fs::metadata(part.join("00000000000000000000.index"))
                .unwrap()
                .len(),
            10_485_760
        );
        assert!(part.join("00000000000000000000.timeindex").exists());
        assert!(part.join("leader-epoch-checkpoint").exists());
    }
    for f in [
        ".lock",
        "meta.properties",
        "recovery-point-offset-checkpoint",
        "replication-offset-checkpoint",
        "log-start-offset-checkpoint",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let meta = fs::read_to_string(dir.join("meta.properties")).unwrap();
    assert!(
        meta.contains("version=0") && meta.contains("broker.id=0"),
        "{meta}"
    );
    assert_eq!(
        fs::read_to_string(dir.join("replication-offset-checkpoint")).unwrap(),
        "0\n3\ndemo 0 100\ndemo 1 100\ndemo 2 100\n"
    );
    mgr.shutdown(NOW).unwrap();
    assert!(dir.join(".gregor_cleanshutdown").exists());
    assert_eq!(
        fs::read_to_string(dir.join("recovery-point-offset-checkpoint")).unwrap(),
        "0\n3\ndemo 0 100\ndemo 1 100\ndemo 2 100\n",
        "STO-58: a clean shutdown flushes everything"
    );
    // Trimmed on clean close (STO-58), preallocated again on open (STO-32).
    assert_eq!(
        fs::metadata(dir.join("demo-0/00000000000000000000.index"))
            .unwrap()
            .len(),
        0
    );
    let mgr = LogManager::open(std::slice::from_ref(&dir), 0, LogConfig::default(), NOW).unwrap();
    assert!(
        !dir.join(".gregor_cleanshutdown").exists(),
        "STO-75: marker removed on open"
    );
    assert_eq!(
        mgr.partitions().cloned().collect::<Vec<_>>(),
        vec![demo(0), demo(1), demo(2)]
    );
    assert_eq!(mgr.high_watermark(&demo(1)), Some(100));
    let log = mgr.get(&demo(2)).unwrap();
    assert_eq!(log.log_end(), 100);
    assert_eq!(read_all(log, 0, 1 << 20).len(), 1);
    assert_eq!(
        fs::metadata(dir.join("demo-0/00000000000000000000.index"))
            .unwrap()
            .len(),
        10_485_760
    );
}

/// STO-73: a second broker on a locked directory fails naming it.
#[test]
fn second_manager_on_a_locked_dir_fails_naming_it() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
    let first = LogManager::open(&dirs, 1, LogConfig::default(), NOW).unwrap();
    let err = LogManager::open(&dirs[1..], 1, LogConfig::default(), NOW).unwrap_err();
    assert!(
        matches!(err, StorageError::DirLocked(ref d) if d == b.path()),
        "{err}"
    );
    assert!(
        err.to_string().contains(&b.path().display().to_string()),
        "{err}"
    );
    drop(first);
    LogManager::open(&dirs, 1, LogConfig::default(), NOW).expect("the lock is released on drop");
}

/// STO-74: a directory written by another broker id is refused.
#[test]
fn mismatching_broker_id_is_an_error() {
    let a = tempfile::tempdir().unwrap();
    let dirs = vec![a.path().to_path_buf()];
    LogManager::open(&dirs, 1, LogConfig::default(), NOW)
        .unwrap()
        .shutdown(NOW)
        .unwrap();
    let err = LogManager::open(&dirs, 2, LogConfig::default(), NOW).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::BrokerIdMismatch {
                found: 1,
                expected: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("meta.properties"));
    fs::write(a.path().join("meta.properties"), "version=0\nbroker.id=x\n").unwrap();
    let err = LogManager::open(&dirs, 1, LogConfig::default(), NOW).unwrap_err();
    assert!(matches!(err, StorageError::MetaProperties { .. }), "{err}");
}

/// STO-72: new partitions go to the directory with the fewest partitions.
#[test]
fn new_partitions_balance_across_dirs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = vec![a.path().to_path_buf(), b.path().to_path_buf()];
    let mut mgr = LogManager::open(&dirs, 0, LogConfig::default(), NOW).unwrap();
    mgr.create(&TopicPartition::new("t", 0), NOW).unwrap();
    mgr.create(&TopicPartition::new("t", 1), NOW).unwrap();
    mgr.create(&TopicPartition::new("t", 2), NOW).unwrap();
    assert!(
        a.path().join("t-0").is_dir()
            && b.path().join("t-1").is_dir()
            && a.path().join("t-2").is_dir()
    );
    mgr.create(&TopicPartition::new("u", 0), NOW).unwrap();
    assert!(b.path().join("u-0").is_dir());
    assert!(matches!(
        mgr.create(&TopicPartition::new("t", 0), NOW),
        Err(StorageError::PartitionExists(_))
    ));
    assert!(
        mgr.create(&TopicPartition::new("bad/name", 0), NOW)
            .is_err()
    );
    // Delete removes the files.
    mgr.delete(&TopicPartition::new("t", 1)).unwrap();
    assert!(!b.path().join("t-1").exists());
    assert!(matches!(
        mgr.delete(&TopicPartition::new("t", 1)),
        Err(StorageError::UnknownPartition(_))
    ));
    mgr.shutdown(NOW).unwrap();
    let mgr = LogManager::open(&dirs, 0, LogConfig::default(), NOW).unwrap();
    assert_eq!(mgr.partitions().count(), 3);
}

/// STO-56, STO-76: after an unclean stop (no marker) the manager recovers
/// every log from its checkpointed recovery point; periodic retention and
/// flush run through the manager.
#[test]
fn unclean_restart_recovers_and_periodic_tasks_run() {
    let a = tempfile::tempdir().unwrap();
    let dirs = vec![a.path().to_path_buf()];
    let config = LogConfig {
        segment_bytes: 4096,
        retention_bytes: Some(8192),
        flush_interval_ms: Some(1000),
        ..LogConfig::default()
    };
    let mut mgr = LogManager::open(&dirs, 0, config.clone(), NOW).unwrap();
    let tp = demo(0);
    let log = mgr.create(&tp, NOW).unwrap();
    for i in 0..50 {
        log.append(&v2_batch(i * 10, 10, 40, 0, NOW), NOW).unwrap();
    }
    mgr.flush_logs(NOW + 1000).unwrap();
    assert_eq!(mgr.get(&tp).unwrap().recovery_point(), 500);
    assert!(mgr.cleanup_logs(NOW).unwrap() > 0);
    let start = mgr.get(&tp).unwrap().log_start();
    assert!(start > 0);
    mgr.checkpoint().unwrap();
    // Unflushed appends after the checkpoint, then a crash: the partial
    // batch at the tail is dropped, the rest survives.
    let log = mgr.get_mut(&tp).unwrap();
    log.append(&v2_batch(500, 10, 40, 0, NOW), NOW).unwrap();
    let seg = a.path().join(format!(
        "demo-0/{:020}.log",
        log.segment_bases().last().unwrap()
    ));
    drop(mgr);
    let mut f = fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &v2_batch(510, 10, 40, 0, NOW)[..100]).unwrap();
    let mgr = LogManager::open(&dirs, 0, config, NOW).unwrap();
    let log = mgr.get(&tp).unwrap();
    assert_eq!(log.log_end(), 510);
    assert_eq!(
        log.log_start(),
        start,
        "STO-70: the log start survives in its checkpoint"
    );
    log.verify_indexes().unwrap();
    assert_eq!(read_all(log, start, 1 << 20).last().unwrap().0, 500);
}

/// STO-70: a malformed checkpoint stops the start with an error naming it.
#[test]
fn malformed_checkpoint_names_the_file() {
    let a = tempfile::tempdir().unwrap();
    let dirs = vec![a.path().to_path_buf()];
    LogManager::open(&dirs, 0, LogConfig::default(), NOW)
        .unwrap()
        .shutdown(NOW)
        .unwrap();
    fs::write(
        a.path().join("log-start-offset-checkpoint"),
        "0\n1\ndemo zero 5\n",
    )
    .unwrap();
    let err = LogManager::open(&dirs, 0, LogConfig::default(), NOW)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("log-start-offset-checkpoint") && err.contains("line 3"),
        "{err}"
    );
}
