//! Every compression codec (none, gzip, snappy, lz4, zstd) round-trips with
//! librdkafka (confluent-kafka) and kafka-python, and is stored as sent:
//! the first batch on disk carries the producer's codec (spec: E2E-3).

use tests::*;

const N: usize = 2_000;
const CODECS: [(&str, u8); 5] = [
    ("none", 0),
    ("gzip", 1),
    ("snappy", 2),
    ("lz4", 3),
    ("zstd", 4),
];

/// Codec bits (attributes & 7) of every v2 batch in a segment file:
/// attributes sit after baseOffset(8) length(4) epoch(4) magic(1) crc(4).
fn codecs_on_disk(segment: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(segment).expect("reading the segment");
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 23 <= bytes.len() {
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().expect("4 bytes"));
        if len <= 0 {
            break; // preallocated tail
        }
        assert_eq!(
            bytes[pos + 16],
            2,
            "expected v2 batches in {}",
            segment.display()
        );
        out.push((u16::from_be_bytes([bytes[pos + 21], bytes[pos + 22]]) & 7) as u8);
        pos += 12 + len as usize;
    }
    out
}

fn roundtrip(driver: &str, codec: &str, extra: &[&str]) {
    let Some(py) = python() else { return };
    let id = CODECS
        .iter()
        .find(|c| c.0 == codec)
        .map(|c| c.1)
        .expect("known codec");
    let b = Broker::start(&["num.partitions=3"]);
    let topic = format!("codec-{codec}");
    let mut args = vec!["--compression", codec];
    args.extend_from_slice(extra);
    let acked = py_produce(&py, driver, &b, &topic, &keyed_records(N), &args);
    assert_eq!(acked.len(), N, "{driver} {codec}: acknowledged count");
    let got = py_consume(&py, driver, &b, &topic, 3, N, &[]);
    if let Err(e) = check_same(&acked, &got).and_then(|()| check_send_order(&acked)) {
        panic!("{driver} with {codec}: {e}\nbroker log:\n{}", b.log_tail());
    }
    // Clients send a batch uncompressed when compressing does not shrink
    // it; every other batch keeps the producer's codec.
    let mut stored = Vec::new();
    for p in 0..3 {
        for seg in b.segment_files(&topic, p) {
            stored.extend(codecs_on_disk(&seg));
        }
    }
    assert!(
        stored.iter().all(|&c| c == id || c == 0) && stored.contains(&id),
        "{driver} with {codec}: batches stored with codecs {stored:?} (0 = none)"
    );
}

/// librdkafka with its default settings.
fn librdkafka(codec: &str) {
    roundtrip("confluent.py", codec, &[]);
}

#[test]
fn librdkafka_none() {
    librdkafka("none");
}

#[test]
fn librdkafka_gzip() {
    librdkafka("gzip");
}

#[test]
fn librdkafka_snappy() {
    librdkafka("snappy");
}

/// librdkafka only compresses with LZ4 when the broker's ApiVersions table
/// lists FindCoordinator (its "LZ4 framing" feature check); otherwise it
/// silently sends LZ4 batches uncompressed, which the on-disk codec check
/// here would catch.
#[test]
fn librdkafka_lz4() {
    librdkafka("lz4");
}

#[test]
fn librdkafka_zstd() {
    librdkafka("zstd");
}

#[test]
fn kafka_python_none() {
    roundtrip("kafka_python.py", "none", &[]);
}

#[test]
fn kafka_python_gzip() {
    roundtrip("kafka_python.py", "gzip", &[]);
}

#[test]
fn kafka_python_snappy() {
    roundtrip("kafka_python.py", "snappy", &[]);
}

#[test]
fn kafka_python_lz4() {
    roundtrip("kafka_python.py", "lz4", &[]);
}

#[test]
fn kafka_python_zstd() {
    roundtrip("kafka_python.py", "zstd", &[]);
}
