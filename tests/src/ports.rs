//! Free loopback ports for the brokers and ZooKeeper servers tests start.
//!
//! A port found with `bind(0)` and released again is in the kernel's
//! ephemeral range: until the broker binds it, the kernel may give it to
//! any other `bind(0)` or outgoing connection — of another test thread, a
//! client, ZooKeeper — and the broker then fails to start, or the test
//! talks to the wrong listener. Ports are therefore taken from just below
//! the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), which
//! only an explicit bind uses, each checked free by binding it once, and
//! never handed out twice in one test process.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// How many ports below the ephemeral range the tests use.
const WINDOW: u16 = 12_000;

/// The lowest port of the kernel's ephemeral range (Linux default 32768).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A loopback port that nothing listens on right now, outside the
/// ephemeral range when the range leaves room, and never handed out before
/// in this process.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let low = ephemeral_low();
    if low > WINDOW + 1024 {
        let base = low - WINDOW;
        // Different test processes start at different places.
        let start = (std::process::id() as u64 * 7919 + handed_out.len() as u64) % WINDOW as u64;
        for i in 0..WINDOW as u64 {
            let port = base + ((start + i * 13) % WINDOW as u64) as u16;
            if handed_out.contains(&port) {
                continue;
            }
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                handed_out.insert(port);
                return port;
            }
        }
    }
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding an ephemeral loopback port");
        if handed_out.insert(port) {
            return port;
        }
    }
}
