//! Where records and groups land: Kafka's partitioning rules, as pure
//! functions.
//!
//! * A record with a key goes to `toPositive(murmur2(key)) % partitions`, the
//!   partition the Java client's default partitioner picks, so keys written
//!   through Gregor's client and through any Kafka client co-locate
//!   (spec: PRD-1).
//! * A record without a key is spread over the partitions: round-robin, or
//!   "sticky" (one partition per batch) where the caller supplies the choice
//!   of the next partition — randomness is an input here (spec: PRD-2).
//! * A consumer group's coordinator is the leader of `__consumer_offsets`
//!   partition `abs(javaStringHashCode(group.id)) % offsets partitions`
//!   (spec: GRP-1).

/// Kafka's 32-bit murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`),
/// returning the same signed value as the Java client.
#[must_use]
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() >= 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit.
#[must_use]
pub const fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition a keyed record goes to among `partitions` (> 0)
/// partitions, as the Java client's default partitioner computes it.
///
/// # Panics
/// If `partitions` is not positive (a topic always has at least one).
#[must_use]
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) % partitions
}

/// Java's `String.hashCode()`: `s[0]*31^(n-1) + … + s[n-1]` over UTF-16 code
/// units, wrapping.
#[must_use]
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Kafka's `Utils.abs`: `Math.abs`, except that `i32::MIN` maps to 0.
#[must_use]
pub const fn java_abs(n: i32) -> i32 {
    if n == i32::MIN { 0 } else { n.abs() }
}

/// The `__consumer_offsets` partition that holds `group_id`'s offsets and
/// whose leader coordinates the group (spec: GRP-1).
///
/// # Panics
/// If `offsets_partitions` is not positive.
#[must_use]
pub fn coordinator_partition(group_id: &str, offsets_partitions: i32) -> i32 {
    assert!(
        offsets_partitions > 0,
        "offsets.topic.num.partitions must be positive"
    );
    java_abs(java_string_hash(group_id)) % offsets_partitions
}

/// Spreads key-less records over partitions one by one (spec: PRD-2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RoundRobin {
    counter: u32,
}

impl RoundRobin {
    /// Starts at partition `start` (callers may pass a random start so that
    /// many producers do not all begin on partition 0).
    #[must_use]
    pub fn starting_at(start: u32) -> Self {
        Self { counter: start }
    }

    /// The next partition among `partitions` (> 0).
    pub fn next_partition(&mut self, partitions: i32) -> i32 {
        let p = (self.counter % partitions.max(1) as u32) as i32;
        self.counter = self.counter.wrapping_add(1);
        p
    }
}

/// The sticky partitioner (KIP-480): every key-less record goes to the
/// current partition until the caller reports that the batch for it was
/// sent; then it moves on to a partition the caller chooses (spec: PRD-2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sticky {
    current: Option<i32>,
}

impl Sticky {
    /// The partition for the next key-less record; `choose` picks a new one
    /// (for example at random) when none is current or the current one no
    /// longer exists.
    pub fn partition(&mut self, partitions: i32, choose: impl FnOnce(i32) -> i32) -> i32 {
        match self.current {
            Some(p) if p < partitions => p,
            _ => {
                let p = choose(partitions).rem_euclid(partitions.max(1));
                self.current = Some(p);
                p
            }
        }
    }

    /// The batch for the current partition was completed: the next record
    /// starts a new one elsewhere.
    pub fn batch_completed(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors (UtilsTest.testMurmur2).
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn keys_map_into_range_and_stay_put() {
        for n in 1..20 {
            let p = partition_for_key(b"user-42", n);
            assert!((0..n).contains(&p));
            assert_eq!(p, partition_for_key(b"user-42", n));
        }
        // toPositive(-973932308) = 1173551340; 1173551340 % 3 = 0.
        assert_eq!(partition_for_key(b"21", 3), 0);
    }

    #[test]
    fn java_hash_and_coordinator() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        // Characters outside the BMP hash as two UTF-16 units, as in Java.
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
        assert_eq!(java_abs(i32::MIN), 0);
        let p = coordinator_partition("my-group", 50);
        assert!((0..50).contains(&p));
        assert_eq!(coordinator_partition("hello", 50), 99_162_322 % 50);
    }

    #[test]
    fn round_robin_and_sticky_spread() {
        let mut rr = RoundRobin::default();
        let got: Vec<i32> = (0..6).map(|_| rr.next_partition(3)).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
        let mut s = Sticky::default();
        assert_eq!(s.partition(4, |_| 2), 2);
        assert_eq!(s.partition(4, |_| 3), 2, "sticks until the batch completes");
        s.batch_completed();
        assert_eq!(s.partition(4, |_| 3), 3);
        assert_eq!(s.partition(2, |_| 7), 1, "a vanished partition is replaced");
    }
}
