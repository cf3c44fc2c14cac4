//! The storage engine: record formats, segment files with sparse mmap'd
//! indexes, partition logs, recovery, retention and checkpoints.
//!
//! Byte layouts and rules are specified in `spec/storage.md`; the `STO-n`
//! identifiers cited here refer to it.

pub mod record;
