//! Per-log configuration: the Kafka `log.*` keys that govern segments,
//! indexes, retention and flushing, with Kafka's defaults.
//!
//! The broker's `server.properties` parser fills a [`LogConfig`]; this module
//! only knows the values, their defaults and how the `hours`/`minutes`/`ms`
//! variants of one setting combine (the most precise one wins, as in Kafka).

use thiserror::Error;

/// Milliseconds in one hour.
const HOUR_MS: i64 = 60 * 60 * 1000;

/// Kafka's `log.segment.bytes` default: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Kafka's `log.roll.hours` default: 168 (one week).
pub const DEFAULT_ROLL_HOURS: i64 = 168;
/// Kafka's `log.index.size.max.bytes` default: 10 MiB.
pub const DEFAULT_INDEX_SIZE_MAX_BYTES: u32 = 10 * 1024 * 1024;
/// Kafka's `log.index.interval.bytes` default: 4 KiB.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;
/// Kafka's `log.retention.hours` default: 168 (one week).
pub const DEFAULT_RETENTION_HOURS: i64 = 168;

/// Why a [`LogConfig`] is unusable. Each variant names the Kafka key.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A key holds a value outside its legal range.
    #[error("invalid value {value} for {key}: {reason}")]
    Invalid {
        /// The Kafka configuration key.
        key: &'static str,
        /// The offending value, rendered.
        value: String,
        /// What the legal range is.
        reason: &'static str,
    },
}

/// The settings of one partition log (spec: STO-40 … STO-44, STO-50 … STO-53).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.segment.bytes`: a segment rolls before it would grow past this.
    pub segment_bytes: u64,
    /// `log.roll.ms` (or `log.roll.hours`): a non-empty segment rolls once
    /// its first entry is this old.
    pub roll_ms: i64,
    /// `log.index.size.max.bytes`: size the offset and time indexes of the
    /// active segment are preallocated to; a full index rolls the segment.
    pub index_size_max_bytes: u32,
    /// `log.index.interval.bytes`: bytes of log between two index entries.
    pub index_interval_bytes: u32,
    /// `log.retention.ms` (or `.minutes`, `.hours`); `None` keeps data
    /// forever (Kafka's `-1`).
    pub retention_ms: Option<i64>,
    /// `log.retention.bytes`; `None` means no size limit (Kafka's `-1`).
    pub retention_bytes: Option<u64>,
    /// `log.flush.interval.messages`: fsync after this many appended
    /// offsets; `None` (Kafka's `Long.MAX_VALUE`) leaves it to the OS.
    pub flush_interval_messages: Option<u64>,
    /// `log.flush.interval.ms`: fsync when the last flush is this old;
    /// `None` leaves it to the OS.
    pub flush_interval_ms: Option<i64>,
    /// `cleanup.policy` includes `delete`: retention applies and
    /// DeleteRecords may move the log start (STO-54, PRO-28). A compacted
    /// topic (`compact` alone) keeps its records.
    pub deletable: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            roll_ms: DEFAULT_ROLL_HOURS * HOUR_MS,
            index_size_max_bytes: DEFAULT_INDEX_SIZE_MAX_BYTES,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            retention_ms: Some(DEFAULT_RETENTION_HOURS * HOUR_MS),
            retention_bytes: None,
            flush_interval_messages: None,
            flush_interval_ms: None,
            deletable: true,
        }
    }
}

impl LogConfig {
    /// Combines `log.retention.ms`, `log.retention.minutes` and
    /// `log.retention.hours` the way Kafka does: the most precise key that is
    /// set wins; a negative value means unlimited (`None`).
    #[must_use]
    pub fn retention_from(
        ms: Option<i64>,
        minutes: Option<i64>,
        hours: Option<i64>,
    ) -> Option<i64> {
        let v = ms
            .or(minutes.map(|m| m.saturating_mul(60 * 1000)))
            .unwrap_or_else(|| {
                hours
                    .unwrap_or(DEFAULT_RETENTION_HOURS)
                    .saturating_mul(HOUR_MS)
            });
        (v >= 0).then_some(v)
    }

    /// Combines `log.roll.ms` and `log.roll.hours`: `ms` wins when set.
    #[must_use]
    pub fn roll_from(ms: Option<i64>, hours: Option<i64>) -> i64 {
        ms.unwrap_or_else(|| hours.unwrap_or(DEFAULT_ROLL_HOURS).saturating_mul(HOUR_MS))
    }

    /// This config with a topic's overrides applied: the topic-level keys
    /// `segment.bytes`, `segment.ms`, `segment.index.bytes`,
    /// `index.interval.bytes`, `retention.ms`, `retention.bytes`,
    /// `flush.messages`, `flush.ms` and `cleanup.policy` (spec: STO-54).
    /// A topic whose `cleanup.policy` lacks `delete` keeps its data whatever
    /// its retention says. A value that does not parse or is out of range
    /// leaves the broker's value in place (topic configs are validated when
    /// they are set).
    #[must_use]
    pub fn with_topic_overrides<'a>(
        &self,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> LogConfig {
        let mut c = self.clone();
        let mut deletes = true;
        for (key, value) in overrides {
            let value = value.trim();
            let int = value.parse::<i64>().ok();
            match (key, int) {
                ("segment.bytes", Some(v)) if (14..=i64::from(i32::MAX)).contains(&v) => {
                    c.segment_bytes = v as u64;
                }
                ("segment.ms", Some(v)) if v >= 1 => c.roll_ms = v,
                // Kafka accepts 4, but an index smaller than one time-index
                // entry could never hold one: 12 is the least that works.
                ("segment.index.bytes", Some(v)) if v >= 0 => {
                    c.index_size_max_bytes = v.clamp(12, i64::from(i32::MAX)) as u32;
                }
                ("index.interval.bytes", Some(v)) if (0..=i64::from(i32::MAX)).contains(&v) => {
                    c.index_interval_bytes = v as u32;
                }
                ("retention.ms", Some(v)) => c.retention_ms = (v >= 0).then_some(v),
                ("retention.bytes", Some(v)) => c.retention_bytes = u64::try_from(v).ok(),
                ("flush.messages", Some(v)) if v >= 1 => {
                    c.flush_interval_messages = (v != i64::MAX).then_some(v as u64);
                }
                ("flush.ms", Some(v)) if v >= 0 => {
                    c.flush_interval_ms = (v != i64::MAX).then_some(v);
                }
                ("cleanup.policy", _) => {
                    deletes = value.split(',').any(|p| p.trim() == "delete");
                }
                _ => {}
            }
        }
        if !deletes {
            c.retention_ms = None;
            c.retention_bytes = None;
        }
        c.deletable = deletes;
        c
    }

    /// Checks the ranges Kafka enforces; called once at the boundary.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, value: String, reason| Err(ConfigError::Invalid { key, value, reason });
        // spec: STO-31 — positions in the index are u32 and Kafka caps the
        // segment at i32::MAX bytes.
        if self.segment_bytes < 14 || self.segment_bytes > i32::MAX as u64 {
            return bad(
                "log.segment.bytes",
                self.segment_bytes.to_string(),
                "14 ..= 2147483647",
            );
        }
        if self.roll_ms < 1 {
            return bad("log.roll.ms", self.roll_ms.to_string(), "at least 1");
        }
        if self.index_size_max_bytes < 12 {
            return bad(
                "log.index.size.max.bytes",
                self.index_size_max_bytes.to_string(),
                "at least 12",
            );
        }
        if let Some(n) = self.flush_interval_messages
            && n < 1
        {
            return bad("log.flush.interval.messages", n.to_string(), "at least 1");
        }
        if let Some(ms) = self.flush_interval_ms
            && ms < 0
        {
            return bad("log.flush.interval.ms", ms.to_string(), "at least 0");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_precise_retention_key_wins() {
        assert_eq!(
            LogConfig::retention_from(None, None, None),
            Some(168 * HOUR_MS)
        );
        assert_eq!(
            LogConfig::retention_from(None, None, Some(1)),
            Some(HOUR_MS)
        );
        assert_eq!(
            LogConfig::retention_from(None, Some(2), Some(1)),
            Some(120_000)
        );
        assert_eq!(
            LogConfig::retention_from(Some(5), Some(2), Some(1)),
            Some(5)
        );
        assert_eq!(LogConfig::retention_from(Some(-1), None, None), None);
        assert_eq!(LogConfig::roll_from(None, Some(2)), 2 * HOUR_MS);
    }

    #[test]
    fn validate_names_the_key() {
        let c = LogConfig {
            segment_bytes: 1 << 40,
            ..LogConfig::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("log.segment.bytes"), "{err}");
        assert!(LogConfig::default().validate().is_ok());
    }

    #[test]
    fn topic_overrides_replace_the_broker_values_they_name() {
        let base = LogConfig::default();
        let c = base.with_topic_overrides([
            ("segment.bytes", "1048576"),
            ("segment.ms", "60000"),
            ("retention.ms", "-1"),
            ("retention.bytes", "5000"),
            ("flush.messages", "1"),
            ("segment.index.bytes", "4"),
            ("max.message.bytes", "10"),
        ]);
        assert_eq!(c.segment_bytes, 1 << 20);
        assert_eq!(c.roll_ms, 60_000);
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.retention_bytes, Some(5000));
        assert_eq!(c.flush_interval_messages, Some(1));
        assert_eq!(c.index_size_max_bytes, 12, "raised to one time-index entry");
        assert!(c.validate().is_ok());
        // Untouched keys keep the broker's values.
        assert_eq!(c.index_interval_bytes, base.index_interval_bytes);
        // Unusable values leave the broker's value.
        let c = base.with_topic_overrides([("segment.bytes", "7"), ("segment.ms", "x")]);
        assert_eq!(c, base);
    }

    #[test]
    fn a_compacted_topic_is_never_trimmed_by_retention() {
        let base = LogConfig {
            retention_bytes: Some(1),
            ..LogConfig::default()
        };
        for policy in ["compact", " compact "] {
            let c = base.with_topic_overrides([("cleanup.policy", policy), ("retention.ms", "5")]);
            assert_eq!(
                (c.retention_ms, c.retention_bytes),
                (None, None),
                "{policy}"
            );
        }
        for policy in ["delete", "compact,delete", "delete,compact"] {
            let c = base.with_topic_overrides([("cleanup.policy", policy), ("retention.ms", "5")]);
            assert_eq!(
                (c.retention_ms, c.retention_bytes),
                (Some(5), Some(1)),
                "{policy}"
            );
        }
    }
}
