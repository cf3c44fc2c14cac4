//! Newtypes for the numbers and names the core reasons about.
//!
//! Kafka's wire protocol carries all of these as plain integers or strings;
//! keeping them apart in the type system stops an epoch from being compared
//! with an offset, or a broker id from being used as a partition number.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares a `Copy` integer newtype with the usual derives, a `new`
/// constructor, a `get` accessor and `Display`.
macro_rules! int_newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// Wraps a raw value.
            #[must_use]
            pub const fn new(value: $inner) -> Self {
                Self(value)
            }

            /// The raw value, as it goes on the wire.
            #[must_use]
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<$inner> for $name {
            fn from(value: $inner) -> Self {
                Self(value)
            }
        }
    };
}

int_newtype!(
    /// A position in a partition's log. The first record ever written to a
    /// partition has offset 0; offsets are never reused within a partition.
    Offset(i64)
);

impl Offset {
    /// Kafka's "no offset" sentinel (-1), used on the wire for unknown
    /// offsets.
    pub const UNDEFINED: Offset = Offset(-1);

    /// The offset `n` records after this one.
    #[must_use]
    pub const fn plus(self, n: i64) -> Offset {
        Offset(self.0 + n)
    }
}

int_newtype!(
    /// The number of a leadership term of one partition. Every leader change
    /// increments it; records carry the epoch of the leader that appended them.
    LeaderEpoch(i32)
);

impl LeaderEpoch {
    /// Kafka's "no epoch" sentinel (-1).
    pub const UNDEFINED: LeaderEpoch = LeaderEpoch(-1);

    /// The next epoch.
    #[must_use]
    pub const fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0 + 1)
    }
}

int_newtype!(
    /// The version of a partition's replica assignment and ISR as recorded by
    /// the controller. Conditional ISR updates must name the current one.
    PartitionEpoch(i32)
);

int_newtype!(
    /// A broker's `broker.id`.
    BrokerId(i32)
);

int_newtype!(
    /// The generation of a consumer group; incremented by every rebalance.
    Generation(i32)
);

int_newtype!(
    /// An idempotent producer's id, handed out by InitProducerId.
    ProducerId(i64)
);

int_newtype!(
    /// A partition number within a topic.
    PartitionIndex(i32)
);

int_newtype!(
    /// Logical time in milliseconds. The core never reads a clock: callers
    /// pass `now` in, and it only ever moves forward.
    Millis(i64)
);

impl Millis {
    /// `self + ms`, saturating.
    #[must_use]
    pub const fn plus(self, ms: i64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

/// A consumer-group member id, assigned by the coordinator.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(pub String);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic name and a partition number: the unit of ordering, storage and
/// replication.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition's index within the topic.
    pub partition: i32,
}

impl TopicPartition {
    /// Names partition `partition` of `topic`.
    #[must_use]
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    /// Formats as `topic-partition`, the partition's directory name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
