//! Running the real `gregor` binary from tests: a free loopback port, a
//! broker process on a data directory, and signals to child processes.

#![allow(dead_code)] // each test file uses a different part

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `gregor` binary cargo built for these tests.
pub const GREGOR: &str = env!("CARGO_BIN_EXE_gregor");

/// How long a broker may take to accept connections, or a process to exit
/// after a signal, before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(40);

#[path = "../../../tests/src/ports.rs"]
mod ports;
pub use ports::free_port;

/// A child process, killed on drop unless it was already stopped.
#[derive(Debug)]
pub struct Proc(Option<Child>);

impl Proc {
    /// Wraps a spawned child.
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("process is running").id()
    }

    /// Sends `kill -SIG` (e.g. "TERM", "INT", "KILL") and waits for the
    /// process to exit.
    pub fn signal(mut self, sig: &str) -> ExitStatus {
        let mut child = self.0.take().expect("process is running");
        assert!(
            Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(child.id().to_string())
                .status()
                .unwrap()
                .success()
        );
        let started = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(started.elapsed() < EXIT_TIMEOUT, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `gregor broker` on `127.0.0.1:port` with its data in `data` and
/// the extra `key=value` overrides, and waits until it accepts connections.
pub fn start_broker(port: u16, data: &Path, overrides: &[&str]) -> Proc {
    let mut cmd = Command::new(GREGOR);
    cmd.arg("broker")
        .args([
            "--override",
            &format!("listeners=PLAINTEXT://127.0.0.1:{port}"),
        ])
        .args(["--override", &format!("log.dirs={}", data.display())]);
    for o in overrides {
        cmd.args(["--override", o]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut proc = Proc::new(child);
    let started = Instant::now();
    // The listener must answer like a Kafka broker and the process must
    // still run: a listener of another process on the port does neither.
    loop {
        let exited = proc.0.as_mut().and_then(|c| c.try_wait().unwrap());
        assert!(exited.is_none(), "broker on port {port} exited: {exited:?}");
        if api_versions_ok(port) {
            return proc;
        }
        assert!(started.elapsed() < START_TIMEOUT, "broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when the listener on `port` answers an ApiVersions v0 request
/// (correlation id 7) without an error within two seconds.
pub fn api_versions_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(2));
    if s.set_read_timeout(timeout).is_err() || s.set_write_timeout(timeout).is_err() {
        return false;
    }
    let req = [0u8, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 7, 0, 0];
    if s.write_all(&req).is_err() {
        return false;
    }
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return false;
    }
    let n = u32::from_be_bytes(len) as usize;
    if !(6..1 << 20).contains(&n) {
        return false;
    }
    let mut body = vec![0u8; n];
    s.read_exact(&mut body).is_ok() && body[..4] == [0, 0, 0, 7] && body[4..6] == [0, 0]
}
