//! The writer/reader publication protocol (spec: STO-45).
//!
//! One writer appends to a partition; any number of readers serve fetches at
//! the same time without taking a lock the writer waits on. The writer
//! writes an entry's bytes first and only then *publishes* the new end with
//! a `Release` store; a reader loads the end with `Acquire` and reads only
//! below it, so every byte it reads was written before it looked.
//!
//! A log publishes two values per append: the active segment's byte length
//! and the log end offset. The writer stores the length before the offset;
//! a reader loads the offset before the length. A reader therefore always
//! sees a length that covers every entry below the offset it saw
//! ([`PublishedEnd::snapshot`]).
//!
//! With the `loom` cargo feature the atomics come from `loom`, so that
//! `tests/loom_publish.rs` can explore every interleaving of this protocol.

#[cfg(feature = "loom")]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(feature = "loom"))]
use std::sync::atomic::{AtomicU64, Ordering};

/// A value that only the writer changes and readers observe without locks.
#[derive(Debug)]
pub struct Watermark(AtomicU64);

impl Watermark {
    /// A watermark starting at `value`.
    #[must_use]
    pub fn new(value: u64) -> Self {
        Self(AtomicU64::new(value))
    }

    /// Publishes `value` after everything the writer did before (`Release`).
    pub fn publish(&self, value: u64) {
        self.0.store(value, Ordering::Release);
    }

    /// The published value; everything written before it was published is
    /// visible to the caller (`Acquire`).
    #[must_use]
    pub fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The end of a log as readers see it: the log end offset and the byte
/// length of the segment that holds the newest entry.
#[derive(Debug)]
pub struct PublishedEnd {
    /// Bytes of the active segment that are fully written.
    position: Watermark,
    /// The offset after the newest fully written entry.
    offset: Watermark,
}

impl PublishedEnd {
    /// A published end at `offset`, `position` bytes into the active segment.
    #[must_use]
    pub fn new(offset: u64, position: u64) -> Self {
        Self {
            position: Watermark::new(position),
            offset: Watermark::new(offset),
        }
    }

    /// Called by the writer after the bytes up to `position` (holding every
    /// entry below `offset`) are written: the length first, then the offset.
    pub fn publish(&self, offset: u64, position: u64) {
        self.position.publish(position);
        self.offset.publish(offset);
    }

    /// The published offset, and a byte length that covers every entry
    /// below it: the offset is loaded first, the length second.
    #[must_use]
    pub fn snapshot(&self) -> (u64, u64) {
        let offset = self.offset.load();
        let position = self.position.load();
        (offset, position)
    }

    /// The published offset alone.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset.load()
    }

    /// The published byte length alone.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position.load()
    }
}
