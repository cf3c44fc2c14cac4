//! Feeds arbitrary bytes to the request decoder: the frame check, the
//! request header decoder at every header version, and the full dispatch
//! (`protocol::handle_frame`) against a real broker on a temporary data
//! directory. Any panic is a bug: malformed input must yield a typed error,
//! an error response or a closed connection (spec: PRO-4).

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use gregor_runtime::broker::Broker;
use gregor_runtime::config::BrokerConfig;
use gregor_runtime::protocol::{self, frame, header};
use libfuzzer_sys::fuzz_target;

struct Env {
    broker: Arc<Broker>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = BrokerConfig::from_pairs([
            ("log.dir", dir.path().to_string_lossy().into_owned()),
            // Keep the fuzzer from filling the disk with topics.
            ("auto.create.topics.enable", "false".to_string()),
        ])
        .expect("fuzz broker config");
        let broker = Arc::new(Broker::open(config).expect("opening the fuzz broker"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime");
        Env {
            broker,
            runtime,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // The size prefix, as the connection reader sees it.
    let _ = frame::check(data, 1 << 20);
    // The header alone at every header version.
    for version in 0..=2 {
        let _ = header::decode(Bytes::copy_from_slice(data), version);
    }
    // The whole request. Long-polling fetches are cut short.
    let env = env();
    let frame = Bytes::copy_from_slice(data);
    env.runtime.block_on(async {
        let _ = tokio::time::timeout(
            Duration::from_millis(20),
            protocol::handle_frame(&env.broker, frame),
        )
        .await;
    });
});
