//! The real `gregor` binary as an operator runs it: startup errors, SIGTERM
//! and kill -9 (spec: PRO-30, PRO-41, PRO-62). Needs no Kafka client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use tests::{BrokerProcess, gregor_bin};

// spec: PRO-41
#[test]
fn unknown_or_invalid_key_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(gregor_bin())
        .args(["broker", "--override", "log.segmnt.bytes=1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.segmnt.bytes"));

    let props = dir.path().join("server.properties");
    std::fs::write(&props, "# broker\nnum.partitions = many\n").unwrap();
    let out = Command::new(gregor_bin())
        .args(["broker", "--config"])
        .arg(&props)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("num.partitions"));
    assert!(
        !dir.path().join("data").exists(),
        "nothing created on a bad config"
    );
}

/// One ApiVersions v0 round trip over a raw socket.
fn api_versions_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let req = [0u8, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 7, 0, 0];
    if s.write_all(&req).is_err() {
        return false;
    }
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return false;
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).is_ok() && body[..4] == [0, 0, 0, 7] && body[4..6] == [0, 0]
}

// spec: PRO-30, PRO-62
#[test]
fn sigterm_exits_zero_and_marks_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let b = BrokerProcess::start(dir.path(), &[]);
    let port = b.port;
    assert!(api_versions_ok(port));
    let status = b.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(dir.path().join(".gregor_cleanshutdown").exists());
    assert!(dir.path().join("cluster-metadata").exists());
    // kill -9 leaves no marker, and the next start still serves.
    let b = BrokerProcess::restart_like(port, dir.path(), &[]);
    assert!(!dir.path().join(".gregor_cleanshutdown").exists());
    b.kill9();
    assert!(!dir.path().join(".gregor_cleanshutdown").exists());
    let b = BrokerProcess::restart_like(port, dir.path(), &[]);
    assert!(api_versions_ok(port));
    assert!(b.terminate().success());
}
