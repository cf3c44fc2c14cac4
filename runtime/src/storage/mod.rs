//! The storage engine: record formats, segment files with sparse mmap'd
//! indexes, partition logs, recovery, retention and checkpoints.
//!
//! Byte layouts and rules are specified in `spec/storage.md`; the `STO-n`
//! identifiers cited here refer to it.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod index;
pub mod log;
pub mod manager;
pub mod publish;
pub mod record;
pub mod segment;
