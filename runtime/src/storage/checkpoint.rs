//! Kafka's text checkpoint files (spec: STO-70, STO-71).
//!
//! ```text
//! 0                 <- format version
//! 2                 <- number of entries
//! demo 0 1500       <- topic partition offset   (offset checkpoints)
//! demo 1 1432
//! ```
//!
//! The per-partition `leader-epoch-checkpoint` has the same frame with
//! `epoch start_offset` lines. Files are replaced atomically: written to
//! `<name>.tmp`, fsynced, renamed over the old file, and the directory is
//! fsynced so the rename itself survives a crash.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use gregor_core::ids::{LeaderEpoch, Offset, TopicPartition};
use gregor_core::log::EpochEntry;
use thiserror::Error;

/// Name of the per-log-dir checkpoint of recovery points.
pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
/// Name of the per-log-dir checkpoint of high watermarks.
pub const REPLICATION_OFFSET_CHECKPOINT: &str = "replication-offset-checkpoint";
/// Name of the per-log-dir checkpoint of log start offsets.
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
/// Name of the per-partition leader-epoch checkpoint.
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
/// The only checkpoint format version.
pub const CHECKPOINT_VERSION: u32 = 0;

/// A checkpoint file could not be read or written. Always names the file.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The file system refused.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's contents do not follow the format.
    #[error("malformed checkpoint {path}, line {line}: {reason}")]
    Malformed {
        /// The checkpoint file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `lines` under the version and count header, atomically
/// (spec: STO-71).
fn write_lines(path: &Path, lines: &[String]) -> Result<(), CheckpointError> {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", lines.len());
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Fsyncs a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads the entry lines of a checkpoint, checking the header; a missing
/// file reads as empty.
fn read_lines(path: &Path) -> Result<Vec<(usize, String)>, CheckpointError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let bad = |line: usize, reason: String| CheckpointError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let (_, version) = lines
        .next()
        .ok_or_else(|| bad(1, "missing version line".into()))?;
    if version.trim().parse::<u32>() != Ok(CHECKPOINT_VERSION) {
        return Err(bad(1, format!("unsupported version {version:?}")));
    }
    let (_, count) = lines
        .next()
        .ok_or_else(|| bad(2, "missing entry count line".into()))?;
    let count: usize = count
        .trim()
        .parse()
        .map_err(|_| bad(2, format!("invalid entry count {count:?}")))?;
    let entries: Vec<(usize, String)> = lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| (n, l.to_string()))
        .collect();
    if entries.len() != count {
        return Err(bad(
            2,
            format!("header says {count} entries, file has {}", entries.len()),
        ));
    }
    Ok(entries)
}

/// Writes an offset checkpoint: one `topic partition offset` line per
/// partition, sorted (spec: STO-70).
pub fn write_offsets(
    path: &Path,
    offsets: &[(TopicPartition, Offset)],
) -> Result<(), CheckpointError> {
    let mut sorted: Vec<_> = offsets.iter().collect();
    sorted.sort();
    let lines: Vec<String> = sorted
        .iter()
        .map(|(tp, o)| format!("{} {} {}", tp.topic, tp.partition, o))
        .collect();
    write_lines(path, &lines)
}

/// Reads an offset checkpoint written by [`write_offsets`] (or by Kafka).
pub fn read_offsets(path: &Path) -> Result<Vec<(TopicPartition, Offset)>, CheckpointError> {
    let mut out = Vec::new();
    for (n, line) in read_lines(path)? {
        let bad = |reason: &str| CheckpointError::Malformed {
            path: path.to_path_buf(),
            line: n,
            reason: format!("{reason}: {line:?}"),
        };
        let mut it = line.split_whitespace();
        let (Some(topic), Some(p), Some(o), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad("expected `topic partition offset`"));
        };
        let p: i32 = p.parse().map_err(|_| bad("invalid partition"))?;
        let o: i64 = o.parse().map_err(|_| bad("invalid offset"))?;
        if p < 0 {
            return Err(bad("negative partition"));
        }
        out.push((TopicPartition::new(topic, p), Offset(o)));
    }
    Ok(out)
}

/// Writes a `leader-epoch-checkpoint`: one `epoch start_offset` line per
/// cache entry (spec: STO-70).
pub fn write_epochs(path: &Path, entries: &[EpochEntry]) -> Result<(), CheckpointError> {
    let lines: Vec<String> = entries
        .iter()
        .map(|e| format!("{} {}", e.epoch, e.start_offset))
        .collect();
    write_lines(path, &lines)
}

/// Reads a `leader-epoch-checkpoint`.
pub fn read_epochs(path: &Path) -> Result<Vec<EpochEntry>, CheckpointError> {
    let mut out = Vec::new();
    for (n, line) in read_lines(path)? {
        let bad = |reason: &str| CheckpointError::Malformed {
            path: path.to_path_buf(),
            line: n,
            reason: format!("{reason}: {line:?}"),
        };
        let mut it = line.split_whitespace();
        let (Some(e), Some(o), None) = (it.next(), it.next(), it.next()) else {
            return Err(bad("expected `epoch start_offset`"));
        };
        let epoch: i32 = e.parse().map_err(|_| bad("invalid epoch"))?;
        let start: i64 = o.parse().map_err(|_| bad("invalid offset"))?;
        if epoch < 0 || start < 0 {
            return Err(bad("negative epoch or offset"));
        }
        out.push(EpochEntry {
            epoch: LeaderEpoch(epoch),
            start_offset: Offset(start),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_in_kafka_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECOVERY_POINT_CHECKPOINT);
        let tps = vec![
            (TopicPartition::new("demo", 1), Offset(7)),
            (TopicPartition::new("demo", 0), Offset(42)),
        ];
        write_offsets(&path, &tps).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "0\n2\ndemo 0 42\ndemo 1 7\n"
        );
        let mut back = read_offsets(&path).unwrap();
        back.sort();
        let mut want = tps;
        want.sort();
        assert_eq!(back, want);
        assert!(
            !dir.path()
                .join("recovery-point-offset-checkpoint.tmp")
                .exists()
        );
    }

    #[test]
    fn malformed_files_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        for (text, line) in [
            ("1\n0\n", 1),
            ("0\n2\n1 0\n", 2),
            ("0\n1\n1 x\n", 3),
            ("", 1),
        ] {
            fs::write(&path, text).unwrap();
            let err = read_epochs(&path).unwrap_err().to_string();
            assert!(err.contains("leader-epoch-checkpoint"), "{err}");
            assert!(err.contains(&format!("line {line}")), "{text:?}: {err}");
        }
        assert!(read_epochs(&dir.path().join("missing")).unwrap().is_empty());
    }
}
