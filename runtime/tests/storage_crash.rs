//! Crash property test (spec: STO-55, STO-56, STO-57, STO-61): damage one
//! file of a log that was not shut down cleanly — cut it at any byte,
//! overwrite its tail with zeros or random bytes, or flip one bit — and
//! reopen. The log must come back as exactly the longest valid prefix of
//! what is on disk, with indexes that agree with it, serving only valid
//! entries and accepting appends at its new end.

mod storage_support;

use std::fs;
use std::path::Path;

use gregor_runtime::storage::config::LogConfig;
use gregor_runtime::storage::record::parse_entry;
use gregor_runtime::storage::segment::{is_legacy_wrapper, parse_file_name};
use proptest::prelude::*;
use storage_support::{open_log, read_all, v1_message, v2_batch};

const NOW: i64 = 1_700_000_000_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 900,
        index_size_max_bytes: 72,
        index_interval_bytes: 100,
        retention_ms: None,
        ..LogConfig::default()
    }
}

#[derive(Clone, Debug)]
enum Damage {
    Cut,
    Zeros,
    Random(Vec<u8>),
    FlipBit(u8),
}

#[derive(Clone, Debug)]
struct Case {
    /// (records, value length, epoch bump, legacy v1?) per entry.
    entries: Vec<(usize, usize, i32, bool)>,
    /// Which file (index into the sorted `.log`, `.index`, `.timeindex`
    /// files) and where (fraction of its length).
    file: usize,
    at: f64,
    damage: Damage,
    /// Close cleanly before damaging. A clean open trusts index files that
    /// pass the structural checks of STO-61, so only cuts (which those
    /// checks catch or which leave a valid, sparser index) are applied to
    /// indexes then.
    clean: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(
            (1usize..5, 0usize..60, 0i32..2, prop::bool::weighted(0.15)),
            1..40,
        ),
        0usize..640,
        0.0f64..1.0,
        prop_oneof![
            Just(Damage::Cut),
            Just(Damage::Zeros),
            prop::collection::vec(any::<u8>(), 1..200).prop_map(Damage::Random),
            (0u8..8).prop_map(Damage::FlipBit),
        ],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(entries, file, at, damage, clean)| {
            let damage = if clean { Damage::Cut } else { damage };
            Case {
                entries,
                file,
                at,
                damage,
                clean,
            }
        })
}

/// The longest valid prefix of the segment files in `dir`, computed
/// independently of the log: entries must parse (framing and checksum),
/// continue the previous entry's offsets (the first from the segment's
/// base, which continues the previous segment) and never lower the leader
/// epoch; the first failure ends the log.
fn longest_valid_prefix(dir: &Path) -> (Vec<(i64, Vec<u8>)>, i64) {
    let mut bases: Vec<i64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| parse_file_name(e.unwrap().file_name().to_str()?, ".log"))
        .collect();
    bases.sort_unstable();
    let mut out = Vec::new();
    let mut next = bases[0];
    let mut epoch = -1;
    for base in bases {
        if base != next {
            break;
        }
        let bytes = fs::read(dir.join(format!("{base:020}.log"))).unwrap();
        let mut pos = 0;
        while pos < bytes.len() {
            let Ok(info) = parse_entry(&bytes[pos..]) else {
                return (out, next);
            };
            let e = &bytes[pos..pos + info.size];
            let contiguous = if info.magic < 2 && is_legacy_wrapper(e) {
                info.base_offset >= next
            } else {
                info.base_offset == next
            };
            let ple = info.partition_leader_epoch;
            if !contiguous || (info.magic == 2 && ple >= 0 && ple < epoch) {
                return (out, next);
            }
            if info.magic == 2 && ple >= 0 {
                epoch = ple;
            }
            out.push((info.base_offset, e.to_vec()));
            next = info.next_offset();
            pos += info.size;
        }
    }
    (out, next)
}

fn damage(path: &Path, at: f64, d: &Damage) {
    let mut bytes = fs::read(path).unwrap();
    let k = ((bytes.len() as f64) * at) as usize;
    match d {
        Damage::Cut => bytes.truncate(k),
        Damage::Zeros => bytes[k..].fill(0),
        Damage::Random(r) => {
            for (i, b) in bytes[k..].iter_mut().enumerate() {
                *b = r[i % r.len()];
            }
        }
        Damage::FlipBit(bit) => {
            if k < bytes.len() {
                bytes[k] ^= 1 << bit;
            }
        }
    }
    fs::write(path, bytes).unwrap();
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let tmp = storage_support::tempdir();
    let dir = tmp.path();
    let mut log = open_log(dir, config(), true, NOW);
    let mut next = 0i64;
    let mut epoch = 0;
    let mut written = Vec::new();
    for (i, &(n, len, bump, legacy)) in case.entries.iter().enumerate() {
        epoch += bump;
        let e = if legacy {
            v1_message(next, len, NOW + i as i64)
        } else {
            v2_batch(next, n, len, epoch, NOW + i as i64)
        };
        let info = log.append(&e, NOW).unwrap();
        next = info.last_offset + 1;
        written.push(e);
    }
    if case.clean {
        log.close(NOW).unwrap();
    } else {
        drop(log); // a crash: no flush, no trimmed indexes, no marker
    }
    // Mostly data files; index files otherwise (and only them after a
    // clean close).
    let suffixes: &[&str] = match (case.clean, case.file % 10) {
        (true, _) => &[".index", ".timeindex"],
        (false, 0..7) => &[".log"],
        (false, _) => &[".index", ".timeindex"],
    };
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| suffixes.iter().any(|s| p.to_str().unwrap().ends_with(s)))
        .collect();
    files.sort();
    let target = &files[case.file / 10 % files.len()];
    damage(target, case.at, &case.damage);

    let (expected, expected_end) = longest_valid_prefix(dir);
    let log = open_log(dir, config(), case.clean, NOW);
    prop_assert_eq!(log.log_end(), expected_end, "damaged {:?}", target);
    log.verify_indexes()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    // Every read agrees with the prefix, from every offset, whatever max_bytes.
    let got = read_all(&log, 0, 1);
    prop_assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        prop_assert_eq!(g, e);
    }
    prop_assert_eq!(read_all(&log, 0, 1 << 20), expected.clone());
    // What survived is what was written (bytes 12..16 of a v2 batch, its
    // leader epoch, are outside its checksum and may differ after a flip).
    for ((_, g), w) in got.iter().zip(&written) {
        prop_assert_eq!(g.len(), w.len());
        prop_assert!(g[..12] == w[..12] && g[16..] == w[16..]);
    }
    if case.clean {
        prop_assert_eq!(expected.len(), written.len(), "index damage loses no data");
    }
    // The log continues at its recovered end.
    let mut log = log;
    let epoch = log.meta().latest_epoch().map_or(0, |e| e.get());
    log.append(&v2_batch(expected_end, 2, 10, epoch, NOW), NOW)
        .unwrap();
    prop_assert_eq!(read_all(&log, 0, 1 << 20).len(), expected.len() + 1);
    log.verify_indexes()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn reopening_after_damage_yields_the_longest_valid_prefix(c in case()) {
        run(&c)?;
    }
}
