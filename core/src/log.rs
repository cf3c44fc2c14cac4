//! One replica's log *metadata*: where the log starts and ends, how far it is
//! known to be on stable storage, and which leader epoch wrote which range of
//! offsets.
//!
//! Record bytes never enter here; the runtime's storage engine holds them and
//! reports appends, truncations and flushes to a [`LogMeta`] so that the
//! replication state machine (and the model that checks it) can reason about
//! offsets and epochs alone.
//!
//! The epoch cache follows Kafka's `leader-epoch-checkpoint`: a list of
//! `(epoch, start offset)` pairs, both strictly increasing (spec: STO-2). It
//! answers OffsetsForLeaderEpoch queries ([`LogMeta::end_offset_for_epoch`],
//! spec: STO-4) and drives a follower's truncation after a leader change,
//! including the walk back to the largest common epoch that KIP-279 added
//! ([`LogMeta::follower_truncation`], spec: STO-5).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{LeaderEpoch, Offset};

/// One entry of the leader-epoch cache: `epoch` wrote the records from
/// `start_offset` up to the next entry's start offset (or the log end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: LeaderEpoch,
    /// The first offset written in that epoch.
    pub start_offset: Offset,
}

/// Why a change to the log metadata was refused. Each variant is a caller bug
/// or a corrupt input; the metadata is left unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LogError {
    /// Appends must start exactly at the log end offset (spec: STO-1).
    #[error("append at offset {got} but the log ends at {expected}")]
    NonContiguousAppend {
        /// The current log end offset.
        expected: Offset,
        /// The first offset of the rejected append.
        got: Offset,
    },
    /// An append must cover at least one offset.
    #[error("empty append at offset {0}")]
    EmptyAppend(Offset),
    /// Records may not be appended in an epoch older than the latest one the
    /// log holds (spec: STO-2).
    #[error("append in epoch {got} after epoch {latest}")]
    EpochRegression {
        /// The latest epoch in the cache.
        latest: LeaderEpoch,
        /// The epoch of the rejected append.
        got: LeaderEpoch,
    },
    /// Negative epochs and offsets are wire sentinels, never stored.
    #[error("negative epoch {epoch} or offset {offset}")]
    Negative {
        /// The epoch given.
        epoch: LeaderEpoch,
        /// The offset given.
        offset: Offset,
    },
}

/// The leader-epoch cache: `(epoch, start offset)` pairs with both fields
/// strictly increasing (spec: STO-2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a cache from checkpointed entries, dropping any entry that
    /// would break monotonicity the way [`EpochCache::assign`] would.
    #[must_use]
    pub fn from_entries(entries: impl IntoIterator<Item = EpochEntry>) -> Self {
        let mut cache = Self::new();
        for e in entries {
            cache.assign(e.epoch, e.start_offset);
        }
        cache
    }

    /// The entries, oldest first.
    #[must_use]
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest entry, if any.
    #[must_use]
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The newest epoch, if any.
    #[must_use]
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.latest().map(|e| e.epoch)
    }

    /// The first offset written in `epoch`, if the cache knows that epoch.
    #[must_use]
    pub fn start_offset_of(&self, epoch: LeaderEpoch) -> Option<Offset> {
        self.entries.iter().find(|e| e.epoch == epoch).map(|e| e.start_offset)
    }

    /// The epoch that wrote `offset`: the newest entry starting at or before
    /// it. `None` for offsets before the first entry.
    #[must_use]
    pub fn epoch_at(&self, offset: Offset) -> Option<LeaderEpoch> {
        self.entries.iter().rev().find(|e| e.start_offset <= offset).map(|e| e.epoch)
    }

    /// Records that `epoch` starts writing at `start_offset`, Kafka's
    /// `LeaderEpochFileCache.assign`. Returns whether the cache changed.
    ///
    /// Entries that conflict with the new one — an epoch at or above it, or a
    /// start offset at or above it — are removed first, so the cache stays
    /// strictly increasing in both fields (spec: STO-2).
    pub fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> bool {
        if epoch.get() < 0 || start_offset.get() < 0 {
            return false;
        }
        if let Some(last) = self.latest()
            && last.epoch == epoch
            && last.start_offset <= start_offset
        {
            return false;
        }
        self.entries.retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry { epoch, start_offset });
        self.debug_check();
        true
    }

    /// Removes every entry that starts at or after `end_offset`: the log was
    /// truncated there (spec: STO-3).
    pub fn truncate_from_end(&mut self, end_offset: Offset) {
        self.entries.retain(|e| e.start_offset < end_offset);
    }

    /// The log's start moved to `start_offset` (retention or a follower reset).
    /// Entries wholly before it are dropped; the entry that covers it is
    /// moved up to start there, so the epoch of the first retained record is
    /// still known (spec: STO-6).
    pub fn truncate_from_start(&mut self, start_offset: Offset) {
        let covering = self.entries.iter().rposition(|e| e.start_offset <= start_offset);
        if let Some(i) = covering {
            self.entries.drain(..i);
            self.entries[0].start_offset = start_offset;
        }
        self.debug_check();
    }

    /// Kafka's OffsetsForLeaderEpoch lookup, given the log end offset
    /// `log_end` (spec: STO-4):
    ///
    /// * the latest epoch ends at the log end;
    /// * an older epoch the cache knows, or a gap between two known epochs,
    ///   answers with the largest known epoch ≤ the requested one and the
    ///   start offset of the next larger epoch;
    /// * an epoch older than every entry answers with the requested epoch and
    ///   the first entry's start offset;
    /// * an epoch newer than the latest, or an empty cache, is unknown (`None`).
    #[must_use]
    pub fn end_offset_for_epoch(
        &self,
        requested: LeaderEpoch,
        log_end: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        if requested.get() < 0 {
            return None;
        }
        let latest = self.latest()?;
        if latest.epoch == requested {
            return Some((requested, log_end));
        }
        let higher = self.entries.iter().find(|e| e.epoch > requested)?;
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            Some(floor) => Some((floor.epoch, higher.start_offset)),
            None => Some((requested, higher.start_offset)),
        }
    }

    fn debug_check(&self) {
        debug_assert!(
            self.entries
                .windows(2)
                .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset),
            "STO-2: epoch cache must be strictly increasing: {:?}",
            self.entries
        );
    }
}

/// The outcome of one OffsetsForLeaderEpoch round trip on a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Truncation {
    /// Truncate the log to this offset (a no-op if it is at or past the end).
    pub offset: Offset,
    /// `false` when the follower must ask again with its (new) latest epoch:
    /// the leader answered with an epoch the follower does not have, so the
    /// largest common epoch is still unknown (the KIP-279 walk-back).
    pub complete: bool,
}

/// One replica's log metadata (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogMeta {
    log_start: Offset,
    log_end: Offset,
    recovery_point: Offset,
    epochs: EpochCache,
}

impl Default for LogMeta {
    fn default() -> Self {
        Self::new()
    }
}

impl LogMeta {
    /// An empty log starting at offset 0.
    #[must_use]
    pub fn new() -> Self {
        Self {
            log_start: Offset(0),
            log_end: Offset(0),
            recovery_point: Offset(0),
            epochs: EpochCache::new(),
        }
    }

    /// Metadata for a log recovered from disk. The recovery point and epoch
    /// cache are clamped to the recovered range.
    #[must_use]
    pub fn recovered(
        log_start: Offset,
        log_end: Offset,
        recovery_point: Offset,
        epochs: EpochCache,
    ) -> Self {
        let log_end = log_end.max(log_start);
        let mut meta = Self {
            log_start,
            log_end,
            recovery_point: recovery_point.clamp(log_start, log_end),
            epochs,
        };
        meta.epochs.truncate_from_end(log_end);
        meta.epochs.truncate_from_start(log_start);
        meta
    }

    /// The first offset still held (moves forward with retention).
    #[must_use]
    pub fn log_start(&self) -> Offset {
        self.log_start
    }

    /// The log end offset (LEO): the offset the next record will get.
    #[must_use]
    pub fn log_end(&self) -> Offset {
        self.log_end
    }

    /// Every offset below this is known to be on stable storage.
    #[must_use]
    pub fn recovery_point(&self) -> Offset {
        self.recovery_point
    }

    /// The leader-epoch cache.
    #[must_use]
    pub fn epochs(&self) -> &EpochCache {
        &self.epochs
    }

    /// The latest epoch that wrote to this log.
    #[must_use]
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.latest_epoch()
    }

    /// The epoch of the record at `offset`, if the log holds it.
    #[must_use]
    pub fn epoch_at(&self, offset: Offset) -> Option<LeaderEpoch> {
        if offset < self.log_start || offset >= self.log_end {
            return None;
        }
        self.epochs.epoch_at(offset)
    }

    /// Records that `count` records written in `epoch` were appended at
    /// `base`, which must be the current log end (spec: STO-1). Works for a
    /// leader's own appends and a follower's replicated batches alike.
    pub fn append(&mut self, base: Offset, count: i64, epoch: LeaderEpoch) -> Result<(), LogError> {
        if base != self.log_end {
            return Err(LogError::NonContiguousAppend { expected: self.log_end, got: base });
        }
        if count <= 0 {
            return Err(LogError::EmptyAppend(base));
        }
        if epoch.get() < 0 {
            return Err(LogError::Negative { epoch, offset: base });
        }
        if let Some(latest) = self.epochs.latest_epoch()
            && epoch < latest
        {
            return Err(LogError::EpochRegression { latest, got: epoch });
        }
        self.epochs.assign(epoch, base);
        self.log_end = base.plus(count);
        Ok(())
    }

    /// Records a new leader epoch that starts at the current log end without
    /// appending anything (a leader does this when it takes over, so that
    /// OffsetsForLeaderEpoch can answer for its epoch at once).
    pub fn begin_epoch(&mut self, epoch: LeaderEpoch) -> Result<(), LogError> {
        if let Some(latest) = self.epochs.latest_epoch()
            && epoch < latest
        {
            return Err(LogError::EpochRegression { latest, got: epoch });
        }
        if epoch.get() < 0 {
            return Err(LogError::Negative { epoch, offset: self.log_end });
        }
        self.epochs.assign(epoch, self.log_end);
        Ok(())
    }

    /// Removes every record at or above `offset` (spec: STO-3). Truncating at
    /// or past the end changes nothing; truncating below the start empties the
    /// log but keeps its start.
    pub fn truncate_to(&mut self, offset: Offset) {
        if offset >= self.log_end {
            return;
        }
        let offset = offset.max(self.log_start);
        self.log_end = offset;
        self.recovery_point = self.recovery_point.min(offset);
        self.epochs.truncate_from_end(offset);
    }

    /// Drops every record and restarts the log at `offset` (a follower whose
    /// fetch position fell out of the leader's range, or a replica that must
    /// start over).
    pub fn truncate_fully_and_start_at(&mut self, offset: Offset) {
        self.log_start = offset;
        self.log_end = offset;
        self.recovery_point = offset;
        self.epochs = EpochCache::new();
    }

    /// Moves the log start forward to `offset` (retention, DeleteRecords).
    /// Never moves it back (spec: STO-6); a start past the end empties the
    /// log at that offset.
    pub fn advance_start(&mut self, offset: Offset) {
        if offset <= self.log_start {
            return;
        }
        if offset > self.log_end {
            self.truncate_fully_and_start_at(offset);
            return;
        }
        self.log_start = offset;
        self.recovery_point = self.recovery_point.max(offset);
        self.epochs.truncate_from_start(offset);
    }

    /// Everything below `offset` has reached stable storage (spec: STO-7).
    pub fn flushed_to(&mut self, offset: Offset) {
        let offset = offset.min(self.log_end);
        self.recovery_point = self.recovery_point.max(offset);
    }

    /// Drops the unflushed suffix, as a power loss would: the log keeps only
    /// what is below the recovery point.
    pub fn lose_unflushed(&mut self) {
        let rp = self.recovery_point;
        self.truncate_to(rp);
    }

    /// The OffsetsForLeaderEpoch answer this log gives as a leader
    /// (spec: STO-4); see [`EpochCache::end_offset_for_epoch`].
    #[must_use]
    pub fn end_offset_for_epoch(&self, requested: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.epochs.end_offset_for_epoch(requested, self.log_end)
    }

    /// The epoch a follower sends in its OffsetsForLeaderEpoch request: its
    /// latest epoch.
    #[must_use]
    pub fn truncation_query(&self) -> Option<LeaderEpoch> {
        self.latest_epoch()
    }

    /// Where a follower truncates, given the leader's answer
    /// `(leader_epoch, leader_end)` to its query (spec: STO-5).
    ///
    /// If the follower holds `leader_epoch` as its own largest epoch ≤ it,
    /// the logs agree up to the lower of the two end offsets for that epoch.
    /// If the follower's largest epoch ≤ `leader_epoch` is a different,
    /// smaller one, the leader knows nothing about it: truncate to where that
    /// epoch ends here and ask again (the KIP-279 walk-back). If the follower
    /// has no epoch ≤ `leader_epoch` at all, nothing before the leader's end
    /// can be shown to differ.
    ///
    /// An unknown answer (`None`: the leader has no epoch ≤ the follower's)
    /// means no record of the follower is known to the leader; truncate to
    /// the log start.
    #[must_use]
    pub fn follower_truncation(&self, answer: Option<(LeaderEpoch, Offset)>) -> Truncation {
        let Some((leader_epoch, leader_end)) = answer else {
            return Truncation { offset: self.log_start, complete: true };
        };
        match self.epochs.end_offset_for_epoch(leader_epoch, self.log_end) {
            Some((own_epoch, own_end)) if own_epoch == leader_epoch => {
                Truncation { offset: leader_end.min(own_end), complete: true }
            }
            Some((_, own_end)) if self.epochs.entries.iter().any(|e| e.epoch < leader_epoch) => {
                Truncation { offset: own_end, complete: false }
            }
            _ => Truncation { offset: leader_end.min(self.log_end), complete: true },
        }
    }

    /// The pre-KIP-279 truncation rule, kept so the model can show why it
    /// was replaced: trust the leader's end offset whatever epoch it names.
    #[must_use]
    pub fn naive_follower_truncation(&self, answer: Option<(LeaderEpoch, Offset)>) -> Truncation {
        match answer {
            Some((_, leader_end)) => {
                Truncation { offset: leader_end.min(self.log_end), complete: true }
            }
            None => Truncation { offset: self.log_start, complete: true },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(epoch: i32, start: i64) -> EpochEntry {
        EpochEntry { epoch: LeaderEpoch(epoch), start_offset: Offset(start) }
    }

    /// Builds a log whose record at offset i was written in `epochs[i]`.
    fn log_of(epochs: &[i32]) -> LogMeta {
        let mut log = LogMeta::new();
        for (i, &ep) in epochs.iter().enumerate() {
            log.append(Offset(i as i64), 1, LeaderEpoch(ep)).unwrap();
        }
        log
    }

    #[test]
    fn append_must_be_contiguous_and_epochs_monotonic() {
        let mut log = LogMeta::new();
        log.append(Offset(0), 3, LeaderEpoch(1)).unwrap();
        assert_eq!(
            log.append(Offset(5), 1, LeaderEpoch(1)),
            Err(LogError::NonContiguousAppend { expected: Offset(3), got: Offset(5) })
        );
        log.append(Offset(3), 2, LeaderEpoch(4)).unwrap();
        assert_eq!(
            log.append(Offset(5), 1, LeaderEpoch(2)),
            Err(LogError::EpochRegression { latest: LeaderEpoch(4), got: LeaderEpoch(2) })
        );
        assert_eq!(log.log_end(), Offset(5));
        assert_eq!(log.epochs().entries(), &[e(1, 0), e(4, 3)]);
    }

    #[test]
    fn assign_removes_conflicting_entries() {
        let mut c = EpochCache::from_entries([e(1, 0), e(2, 5), e(3, 9)]);
        // An epoch that starts earlier than existing entries replaces them.
        assert!(c.assign(LeaderEpoch(4), Offset(5)));
        assert_eq!(c.entries(), &[e(1, 0), e(4, 5)]);
        // Same epoch, later start: nothing to do.
        assert!(!c.assign(LeaderEpoch(4), Offset(7)));
    }

    #[test]
    fn end_offset_for_epoch_follows_kafka() {
        let log = log_of(&[1, 1, 3, 3, 3, 6]);
        let q = |ep| log.end_offset_for_epoch(LeaderEpoch(ep));
        assert_eq!(q(6), Some((LeaderEpoch(6), Offset(6))));
        assert_eq!(q(3), Some((LeaderEpoch(3), Offset(5))));
        assert_eq!(q(4), Some((LeaderEpoch(3), Offset(5))), "gap answers with the floor epoch");
        assert_eq!(q(2), Some((LeaderEpoch(1), Offset(2))));
        assert_eq!(q(0), Some((LeaderEpoch(0), Offset(0))), "older than all: first start");
        assert_eq!(q(7), None, "newer than the latest is unknown");
        assert_eq!(LogMeta::new().end_offset_for_epoch(LeaderEpoch(1)), None);
    }

    #[test]
    fn truncate_and_advance_start_keep_cache_consistent() {
        let mut log = log_of(&[1, 1, 2, 2, 5]);
        log.flushed_to(Offset(4));
        log.truncate_to(Offset(3));
        assert_eq!(log.log_end(), Offset(3));
        assert_eq!(log.recovery_point(), Offset(3));
        assert_eq!(log.epochs().entries(), &[e(1, 0), e(2, 2)]);
        log.advance_start(Offset(1));
        assert_eq!(log.epochs().entries(), &[e(1, 1), e(2, 2)]);
        log.advance_start(Offset(0));
        assert_eq!(log.log_start(), Offset(1), "STO-6: the start never moves back");
        log.advance_start(Offset(9));
        assert_eq!((log.log_start(), log.log_end()), (Offset(9), Offset(9)));
        assert!(log.epochs().entries().is_empty());
    }

    #[test]
    fn power_loss_drops_unflushed_suffix() {
        let mut log = log_of(&[1, 1, 1, 2]);
        log.flushed_to(Offset(2));
        log.lose_unflushed();
        assert_eq!(log.log_end(), Offset(2));
        assert_eq!(log.latest_epoch(), Some(LeaderEpoch(1)));
    }

    /// KIP-279's scenario: the follower's latest epoch is unknown to the
    /// leader; the naive rule keeps a divergent record, the walk-back does not.
    #[test]
    fn walk_back_finds_largest_common_epoch() {
        // Both wrote offset 0 in epoch 1. The follower then led epoch 2 and
        // wrote offsets 1..3 that nobody fetched; the other replica, still in
        // epoch 1, had written offsets 1..3 too, and then led epoch 3.
        let follower = log_of(&[1, 2, 2]);
        let leader = log_of(&[1, 1, 1, 3]);
        let mut f = follower.clone();
        loop {
            let answer = leader.end_offset_for_epoch(f.truncation_query().unwrap());
            let t = f.follower_truncation(answer);
            f.truncate_to(t.offset);
            if t.complete {
                break;
            }
        }
        assert_eq!(f.log_end(), Offset(1), "only the common prefix survives");

        let mut naive = follower;
        let t = naive.naive_follower_truncation(Some((LeaderEpoch(2), Offset(3))));
        naive.truncate_to(t.offset);
        assert_eq!(naive.log_end(), Offset(3), "the naive rule keeps the divergent offsets 1 and 2");
    }
}

#[cfg(test)]
mod props {
    //! Property tests against a reference log that stores the epoch of every
    //! offset explicitly.
    use proptest::prelude::*;

    use super::*;

    /// Epoch sequences: non-decreasing, starting at 0..3.
    fn epoch_runs() -> impl Strategy<Value = Vec<i32>> {
        prop::collection::vec((0i32..3, 1usize..4), 0..6).prop_map(|runs| {
            let mut epoch = 0;
            let mut out = Vec::new();
            for (bump, len) in runs {
                epoch += bump;
                out.extend(std::iter::repeat_n(epoch, len));
            }
            out
        })
    }

    fn build(epochs: &[i32]) -> LogMeta {
        let mut log = LogMeta::new();
        for (i, &ep) in epochs.iter().enumerate() {
            log.append(Offset(i as i64), 1, LeaderEpoch(ep)).unwrap();
        }
        log
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// STO-4: the cache answers exactly what the per-offset reference says.
        #[test]
        fn end_offset_matches_reference(epochs in epoch_runs(), q in 0i32..12) {
            let log = build(&epochs);
            let got = log.end_offset_for_epoch(LeaderEpoch(q));
            let latest = epochs.last().copied();
            let expected = if latest.is_none() || q > latest.unwrap() {
                None
            } else if latest == Some(q) {
                Some((LeaderEpoch(q), Offset(epochs.len() as i64)))
            } else {
                let end = epochs.iter().position(|&e| e > q).unwrap() as i64;
                let floor = epochs.iter().copied().filter(|&e| e <= q).max().unwrap_or(q);
                Some((LeaderEpoch(floor), Offset(end)))
            };
            prop_assert_eq!(got, expected);
            for (i, &ep) in epochs.iter().enumerate() {
                prop_assert_eq!(log.epoch_at(Offset(i as i64)), Some(LeaderEpoch(ep)));
            }
        }

        /// STO-5: two logs that agree on a prefix and then diverge (any
        /// offset both hold with the same epoch holds the same record — the
        /// log-matching premise) converge, through repeated
        /// OffsetsForLeaderEpoch rounds, to exactly the common prefix, or
        /// keep more only where the follower's records are the leader's.
        #[test]
        fn walk_back_truncates_to_common_prefix(
            prefix in epoch_runs(),
            f_tail in prop::collection::vec(1i32..3, 0..4),
            l_tail in prop::collection::vec(1i32..3, 0..4),
        ) {
            // Give the two tails disjoint epochs above the prefix so that they
            // really diverge: follower epochs are odd bumps, leader's even,
            // and the leader's latest epoch is the largest.
            let base = prefix.last().copied().unwrap_or(0);
            let mut follower = prefix.clone();
            let mut ep = base;
            for b in &f_tail { ep += 2 * b - 1; follower.push(ep); }
            let f_max = ep;
            let mut leader = prefix.clone();
            let mut ep = base.max(f_max);
            for b in &l_tail { ep += 2 * b; leader.push(ep); }
            let mut lf = build(&leader);
            // The leader has begun its own, newest epoch.
            lf.begin_epoch(LeaderEpoch(ep + 2)).unwrap();
            let mut ff = build(&follower);
            let mut rounds = 0;
            loop {
                rounds += 1;
                prop_assert!(rounds < 20, "walk-back must terminate");
                let Some(q) = ff.truncation_query() else { break };
                let t = ff.follower_truncation(lf.end_offset_for_epoch(q));
                ff.truncate_to(t.offset);
                if t.complete { break; }
            }
            // Longest common prefix by (offset, epoch).
            let lcp = leader.iter().zip(&follower).take_while(|(a, b)| a == b).count() as i64;
            prop_assert_eq!(ff.log_end(), Offset(lcp));
        }
    }
}
