//! Kafka's consumer protocol: the bytes consumers put in JoinGroup protocol
//! metadata (a subscription) and in SyncGroup assignments
//! (spec: GRP-70, GRP-71).
//!
//! Both are big-endian, non-flexible structures led by an `i16` version:
//!
//! ```text
//! ConsumerProtocolSubscription
//!   v0: topics [string], user_data nullable bytes
//!   v1: + owned_partitions [topic string, partitions [i32]]
//!   v2: + generation_id i32
//!   v3: + rack_id nullable string
//! ConsumerProtocolAssignment (v0; v1–v3 share the layout)
//!   assigned_partitions [topic string, partitions [i32]], user_data nullable bytes
//! ```
//!
//! Decoding reads the fields a version defines and ignores anything after
//! them, as Kafka does, so a newer client's subscription still decodes.
//! Malformed input is a [`ConsumerProtocolError`], never a panic.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::ids::TopicPartition;

/// The highest subscription version [`Subscription::encode`] writes.
pub const MAX_SUBSCRIPTION_VERSION: i16 = 3;
/// The highest assignment version [`Assignment::encode`] writes.
pub const MAX_ASSIGNMENT_VERSION: i16 = 3;

/// Why consumer-protocol bytes could not be decoded or encoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConsumerProtocolError {
    /// The input ended inside a field.
    #[error("truncated {field}: need {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A length or count below -1 (or -1 where null is not allowed).
    #[error("invalid length {length} for {field}")]
    InvalidLength {
        /// The field being read.
        field: &'static str,
        /// The length read.
        length: i32,
    },
    /// A string that is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// A negative version.
    #[error("unsupported version {0}")]
    UnsupportedVersion(i16),
    /// A value too long for its length prefix.
    #[error("{field} too long to encode")]
    TooLong {
        /// The field being written.
        field: &'static str,
    },
}

/// A consumer's subscription, sent as JoinGroup protocol metadata.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// The version to encode (or that was decoded).
    pub version: i16,
    /// The subscribed topics.
    pub topics: Vec<String>,
    /// Assignor-specific data.
    pub user_data: Option<Vec<u8>>,
    /// The partitions the member owned in its last generation (v1+).
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation of `owned_partitions` (v2+, -1 if unknown).
    pub generation: i32,
    /// The consumer's rack (v3+).
    pub rack_id: Option<String>,
}

/// A member's assignment, sent in SyncGroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Assignment {
    /// The version to encode (or that was decoded).
    pub version: i16,
    /// The assigned partitions.
    pub partitions: Vec<TopicPartition>,
    /// Assignor-specific data.
    pub user_data: Option<Vec<u8>>,
}

impl Default for Subscription {
    /// A v0 subscription to nothing, generation unknown (-1).
    fn default() -> Self {
        Subscription {
            version: 0,
            topics: Vec::new(),
            user_data: None,
            owned_partitions: Vec::new(),
            generation: -1,
            rack_id: None,
        }
    }
}

impl Subscription {
    /// Encodes at `self.version` (fields the version lacks are dropped).
    ///
    /// # Errors
    /// A version outside `0..=MAX_SUBSCRIPTION_VERSION` or an over-long field.
    pub fn encode(&self) -> Result<Vec<u8>, ConsumerProtocolError> {
        if !(0..=MAX_SUBSCRIPTION_VERSION).contains(&self.version) {
            return Err(ConsumerProtocolError::UnsupportedVersion(self.version));
        }
        let mut w = Writer::default();
        w.i16(self.version);
        w.len(self.topics.len(), "topics")?;
        for t in &self.topics {
            w.string(t, "topic")?;
        }
        w.nullable_bytes(self.user_data.as_deref(), "user_data")?;
        if self.version >= 1 {
            w.topic_partitions(&self.owned_partitions)?;
        }
        if self.version >= 2 {
            w.i32(self.generation);
        }
        if self.version >= 3 {
            w.nullable_string(self.rack_id.as_deref(), "rack_id")?;
        }
        Ok(w.buf)
    }

    /// Decodes any version; fields after those of v3 are ignored.
    ///
    /// # Errors
    /// Truncated or malformed input.
    pub fn decode(bytes: &[u8]) -> Result<Subscription, ConsumerProtocolError> {
        let mut r = Reader { buf: bytes };
        let version = r.i16("version")?;
        if version < 0 {
            return Err(ConsumerProtocolError::UnsupportedVersion(version));
        }
        let count = r.count("topics", 2)?;
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            topics.push(r.string("topic")?);
        }
        let user_data = r.nullable_bytes("user_data")?;
        let owned_partitions = if version >= 1 {
            r.topic_partitions()?
        } else {
            Vec::new()
        };
        let generation = if version >= 2 {
            r.i32("generation_id")?
        } else {
            -1
        };
        let rack_id = if version >= 3 {
            r.nullable_string("rack_id")?
        } else {
            None
        };
        Ok(Subscription {
            version,
            topics,
            user_data,
            owned_partitions,
            generation,
            rack_id,
        })
    }
}

impl Assignment {
    /// Encodes at `self.version`.
    ///
    /// # Errors
    /// A version outside `0..=MAX_ASSIGNMENT_VERSION` or an over-long field.
    pub fn encode(&self) -> Result<Vec<u8>, ConsumerProtocolError> {
        if !(0..=MAX_ASSIGNMENT_VERSION).contains(&self.version) {
            return Err(ConsumerProtocolError::UnsupportedVersion(self.version));
        }
        let mut w = Writer::default();
        w.i16(self.version);
        w.topic_partitions(&self.partitions)?;
        w.nullable_bytes(self.user_data.as_deref(), "user_data")?;
        Ok(w.buf)
    }

    /// Decodes any version. An empty input is an empty assignment, as
    /// Kafka's coordinator sends one to members the leader left out.
    ///
    /// # Errors
    /// Truncated or malformed input.
    pub fn decode(bytes: &[u8]) -> Result<Assignment, ConsumerProtocolError> {
        if bytes.is_empty() {
            return Ok(Assignment::default());
        }
        let mut r = Reader { buf: bytes };
        let version = r.i16("version")?;
        if version < 0 {
            return Err(ConsumerProtocolError::UnsupportedVersion(version));
        }
        let partitions = r.topic_partitions()?;
        let user_data = r.nullable_bytes("user_data")?;
        Ok(Assignment {
            version,
            partitions,
            user_data,
        })
    }
}

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn len(&mut self, n: usize, field: &'static str) -> Result<(), ConsumerProtocolError> {
        let n = i32::try_from(n).map_err(|_| ConsumerProtocolError::TooLong { field })?;
        self.i32(n);
        Ok(())
    }

    fn string(&mut self, s: &str, field: &'static str) -> Result<(), ConsumerProtocolError> {
        let n = i16::try_from(s.len()).map_err(|_| ConsumerProtocolError::TooLong { field })?;
        self.i16(n);
        self.buf.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn nullable_string(
        &mut self,
        s: Option<&str>,
        field: &'static str,
    ) -> Result<(), ConsumerProtocolError> {
        match s {
            None => {
                self.i16(-1);
                Ok(())
            }
            Some(s) => self.string(s, field),
        }
    }

    fn nullable_bytes(
        &mut self,
        b: Option<&[u8]>,
        field: &'static str,
    ) -> Result<(), ConsumerProtocolError> {
        match b {
            None => self.i32(-1),
            Some(b) => {
                self.len(b.len(), field)?;
                self.buf.extend_from_slice(b);
            }
        }
        Ok(())
    }

    /// `[topic string, partitions [i32]]`, grouped by topic in first-seen
    /// order, partitions in the order given.
    fn topic_partitions(&mut self, parts: &[TopicPartition]) -> Result<(), ConsumerProtocolError> {
        let mut order: Vec<&str> = Vec::new();
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in parts {
            let entry = by_topic.entry(tp.topic.as_str()).or_default();
            if entry.is_empty() {
                order.push(tp.topic.as_str());
            }
            entry.push(tp.partition);
        }
        self.len(order.len(), "topic_partitions")?;
        for topic in order {
            self.string(topic, "topic")?;
            let partitions = &by_topic[topic];
            self.len(partitions.len(), "partitions")?;
            for &p in partitions {
                self.i32(p);
            }
        }
        Ok(())
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&[u8], ConsumerProtocolError> {
        if self.buf.len() < n {
            return Err(ConsumerProtocolError::Truncated {
                field,
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, ConsumerProtocolError> {
        let b = self.take(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, ConsumerProtocolError> {
        let b = self.take(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array count whose elements take at least `min_size` bytes each,
    /// checked against the bytes left so a hostile count cannot make us
    /// allocate.
    fn count(
        &mut self,
        field: &'static str,
        min_size: usize,
    ) -> Result<usize, ConsumerProtocolError> {
        let n = self.i32(field)?;
        let Ok(count) = usize::try_from(n) else {
            return Err(ConsumerProtocolError::InvalidLength { field, length: n });
        };
        let needed = count.saturating_mul(min_size);
        if needed > self.buf.len() {
            return Err(ConsumerProtocolError::Truncated {
                field,
                needed,
                available: self.buf.len(),
            });
        }
        Ok(count)
    }

    fn string(&mut self, field: &'static str) -> Result<String, ConsumerProtocolError> {
        self.nullable_string(field)?
            .ok_or(ConsumerProtocolError::InvalidLength { field, length: -1 })
    }

    fn nullable_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, ConsumerProtocolError> {
        let n = self.i16(field)?;
        if n == -1 {
            return Ok(None);
        }
        let Ok(len) = usize::try_from(n) else {
            return Err(ConsumerProtocolError::InvalidLength {
                field,
                length: i32::from(n),
            });
        };
        let bytes = self.take(len, field)?;
        let s =
            std::str::from_utf8(bytes).map_err(|_| ConsumerProtocolError::InvalidUtf8 { field })?;
        Ok(Some(s.to_owned()))
    }

    fn nullable_bytes(
        &mut self,
        field: &'static str,
    ) -> Result<Option<Vec<u8>>, ConsumerProtocolError> {
        let n = self.i32(field)?;
        if n == -1 {
            return Ok(None);
        }
        let Ok(len) = usize::try_from(n) else {
            return Err(ConsumerProtocolError::InvalidLength { field, length: n });
        };
        Ok(Some(self.take(len, field)?.to_vec()))
    }

    fn topic_partitions(&mut self) -> Result<Vec<TopicPartition>, ConsumerProtocolError> {
        let topics = self.count("topic_partitions", 6)?;
        let mut out = Vec::new();
        for _ in 0..topics {
            let topic = self.string("topic")?;
            let n = self.count("partitions", 4)?;
            out.reserve(n);
            for _ in 0..n {
                out.push(TopicPartition::new(topic.clone(), self.i32("partition")?));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    /// The bytes Kafka's Java client writes for a v0 subscription to
    /// `["foo"]` with null user data (spec: GRP-70).
    #[test]
    fn subscription_v0_matches_the_java_layout() {
        let s = Subscription {
            version: 0,
            topics: vec!["foo".into()],
            ..Subscription::default()
        };
        let bytes = s.encode().unwrap();
        assert_eq!(
            bytes,
            [
                0, 0, 0, 0, 0, 1, 0, 3, b'f', b'o', b'o', 0xff, 0xff, 0xff, 0xff
            ]
        );
        let back = Subscription::decode(&bytes).unwrap();
        assert_eq!(back.topics, vec!["foo".to_string()]);
        assert_eq!(back.generation, -1);
    }

    /// v1 adds owned partitions grouped by topic (spec: GRP-70).
    #[test]
    fn subscription_v1_carries_owned_partitions() {
        let s = Subscription {
            version: 1,
            topics: vec!["a".into(), "b".into()],
            user_data: Some(vec![9]),
            owned_partitions: vec![tp("a", 0), tp("a", 2), tp("b", 1)],
            generation: -1,
            rack_id: None,
        };
        let bytes = s.encode().unwrap();
        let back = Subscription::decode(&bytes).unwrap();
        assert_eq!(back, s);
        // A v0 reader of the same topics sees no owned partitions.
        let v0 = Subscription {
            version: 0,
            ..s.clone()
        }
        .encode()
        .unwrap();
        assert!(
            Subscription::decode(&v0)
                .unwrap()
                .owned_partitions
                .is_empty()
        );
    }

    /// A future version's extra trailing fields are ignored.
    #[test]
    fn newer_versions_decode_their_known_prefix() {
        let s = Subscription {
            version: 3,
            topics: vec!["t".into()],
            user_data: None,
            owned_partitions: vec![tp("t", 0)],
            generation: 7,
            rack_id: Some("r1".into()),
        };
        let mut bytes = s.encode().unwrap();
        bytes[1] = 9; // version 9
        bytes.extend_from_slice(&[1, 2, 3]);
        let back = Subscription::decode(&bytes).unwrap();
        assert_eq!(back.version, 9);
        assert_eq!(back.generation, 7);
        assert_eq!(back.rack_id.as_deref(), Some("r1"));
    }

    /// spec: GRP-71
    #[test]
    fn assignment_v0_matches_the_java_layout() {
        let a = Assignment {
            version: 0,
            partitions: vec![tp("foo", 0), tp("foo", 1)],
            user_data: None,
        };
        let bytes = a.encode().unwrap();
        assert_eq!(
            bytes,
            [
                0, 0, 0, 0, 0, 1, 0, 3, b'f', b'o', b'o', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0xff,
                0xff, 0xff, 0xff
            ]
        );
        assert_eq!(Assignment::decode(&bytes).unwrap(), a);
        assert_eq!(Assignment::decode(&[]).unwrap(), Assignment::default());
    }

    #[test]
    fn hostile_counts_are_errors_not_allocations() {
        // version 0, topics count i32::MAX
        let bytes = [0, 0, 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            Subscription::decode(&bytes),
            Err(ConsumerProtocolError::Truncated {
                field: "topics",
                ..
            })
        ));
        let bytes = [0, 0, 0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(
            Assignment::decode(&bytes),
            Err(ConsumerProtocolError::InvalidLength { length: -2, .. })
        ));
        assert_eq!(
            Subscription::decode(&[0xff, 0xff]),
            Err(ConsumerProtocolError::UnsupportedVersion(-1))
        );
    }

    proptest! {
        /// Any byte string decodes to a value or an error — never a panic —
        /// and a decoded subscription re-encodes to a prefix-equal value.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(s) = Subscription::decode(&bytes) && (0..=MAX_SUBSCRIPTION_VERSION).contains(&s.version) {
                let again = Subscription::decode(&s.encode().unwrap()).unwrap();
                prop_assert_eq!(again, s);
            }
            let _ = Assignment::decode(&bytes);
        }

        /// Every truncation of a valid encoding is a typed error.
        #[test]
        fn truncations_are_errors(topics in proptest::collection::vec("[a-z]{1,5}", 0..4), cut in 0usize..64) {
            let s = Subscription { version: 1, topics, owned_partitions: vec![tp("x", 1)], ..Subscription::default() };
            let bytes = s.encode().unwrap();
            if cut < bytes.len() {
                prop_assert!(Subscription::decode(&bytes[..cut]).is_err());
            } else {
                prop_assert_eq!(Subscription::decode(&bytes).unwrap(), s);
            }
        }
    }
}
