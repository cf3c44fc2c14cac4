//! `gregor broker` with no arguments runs the embedded single-node default
//! (listener 127.0.0.1:9092, data under ./data), and `kcat -L` lists it
//! (spec: E2E-10). Skipped, loudly, when port 9092 is already taken.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::*;

#[test]
fn no_argument_broker_is_listed_by_kcat() {
    let Some(kcat) = kcat() else { return };
    if TcpListener::bind("127.0.0.1:9092").is_err() {
        eprintln!(
            "\n!!! SKIPPED no_argument_broker_is_listed_by_kcat: 127.0.0.1:9092 is taken \
             by another process\n"
        );
        return;
    }
    let cwd = tempfile::tempdir().expect("temp cwd");
    let mut child = Command::new(gregor_bin())
        .arg("broker")
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(cwd.path().join("broker.log")).expect("log file"))
        .spawn()
        .expect("spawning gregor broker");
    let log = || std::fs::read_to_string(cwd.path().join("broker.log")).unwrap_or_default();
    let addr = SocketAddr::from(([127, 0, 0, 1], 9092));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !accepts(addr) {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("gregor broker exited ({s}):\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "not listening on 9092:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let out = run_with_timeout(
        Command::new(&kcat).args(["-b", "127.0.0.1:9092", "-L", "-m", "10"]),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    let status = child.wait().expect("waiting for the broker");
    assert!(out.status.success(), "kcat -L failed: {text}\n{}", log());
    assert!(
        text.contains("1 brokers:") && text.contains("broker 0 at 127.0.0.1:9092"),
        "kcat -L does not list the broker:\n{text}"
    );
    assert!(
        stopped && status.success(),
        "SIGTERM exit: {status}\n{}",
        log()
    );
    assert!(
        cwd.path()
            .join("data")
            .join(".gregor_cleanshutdown")
            .exists(),
        "no ./data with a clean-shutdown marker in the working directory"
    );
}
