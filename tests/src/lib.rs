//! Helpers shared by the end-to-end tests: locating the `gregor` binary,
//! picking free loopback ports, starting and stopping broker processes,
//! and finding the real Kafka clients `scripts/test.sh` installs.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a broker may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The `gregor` binary: `$GREGOR_BIN`, else the one next to this test's
/// `deps/` directory (cargo builds it for `cargo test --workspace`).
pub fn gregor_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GREGOR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join(format!("gregor{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p runtime --bin gregor` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// A `gregor broker` child process.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Option<Child>,
    /// The listener port.
    pub port: u16,
    /// The data directory (`log.dirs`).
    pub data: PathBuf,
    overrides: Vec<String>,
}

impl BrokerProcess {
    /// Starts a broker on a free port with its data in `data`, waiting until
    /// it accepts connections. `overrides` are extra `key=value` settings.
    pub fn start(data: &Path, overrides: &[&str]) -> Self {
        Self::start_on(
            free_port(),
            data,
            overrides.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn start_on(port: u16, data: &Path, overrides: Vec<String>) -> Self {
        let mut cmd = Command::new(gregor_bin());
        cmd.arg("broker")
            .arg("--override")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"))
            .arg("--override")
            .arg(format!("log.dirs={}", data.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for o in &overrides {
            cmd.arg("--override").arg(o);
        }
        let mut child = cmd.spawn().expect("spawn gregor broker");
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("broker exited at start ({status}):\n{err}");
            }
            assert!(started.elapsed() < START_TIMEOUT, "broker did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Drain stderr so the broker never blocks on a full pipe.
        if let Some(mut e) = child.stderr.take() {
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = e.read_to_end(&mut sink);
            });
        }
        Self {
            child: Some(child),
            port,
            data: data.to_path_buf(),
            overrides,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait(Duration::from_secs(40))
    }

    /// Kills the broker with SIGKILL (no clean shutdown).
    pub fn kill9(mut self) {
        self.signal("KILL");
        self.wait(Duration::from_secs(10));
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                panic!("broker did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new broker on the same port, data and settings.
    pub fn restart_like(port: u16, data: &Path, overrides: &[&str]) -> Self {
        Self::start_on(
            port,
            data,
            overrides.iter().map(|s| s.to_string()).collect(),
        )
    }

    /// The settings this broker was started with.
    pub fn overrides(&self) -> &[String] {
        &self.overrides
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The virtualenv's Python made by `scripts/test.sh` (`.venv/`).
pub fn venv_python() -> PathBuf {
    let p = workspace_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/test.sh, which creates it",
        p.display()
    );
    p
}

/// Runs `tests/clients/roundtrip.py` with `args`; returns its output.
pub fn roundtrip(args: &[&str]) -> Output {
    Command::new(venv_python())
        .arg(workspace_root().join("tests/clients/roundtrip.py"))
        .args(args)
        .output()
        .expect("run roundtrip.py")
}

/// Runs a command and returns its output, failing with its stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
