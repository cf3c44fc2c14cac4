//! Feeds arbitrary frames (the bytes after the size prefix) to the broker's
//! request entry point, `protocol::handle_frame`, on a real broker in a
//! temporary directory. Any panic, abort or hang is a bug (spec: PRO-4,
//! PRO-5). Run with:
//!
//! ```text
//! cd runtime/fuzz && cargo +nightly fuzz run request_decoder -- -max_total_time=60
//! ```
#![no_main]

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use gregor_runtime::broker::Broker;
use gregor_runtime::config::BrokerConfig;
use gregor_runtime::protocol::handle_frame;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
    rt: tokio::runtime::Runtime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BrokerConfig::from_pairs([("log.dirs", dir.path().display().to_string())])
        .expect("valid config");
    let broker = Arc::new(Broker::open(config).expect("broker opens"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    Fixture {
        _dir: dir,
        broker,
        rt,
    }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let _ =
        f.rt.block_on(handle_frame(&f.broker, Bytes::copy_from_slice(data)));
});
