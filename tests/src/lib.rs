//! Helpers shared by the end-to-end tests: locating the `gregor` binary,
//! picking free loopback ports, starting and stopping broker processes, and
//! driving the real Kafka clients (kcat and the Python clients under
//! `tests/clients/`).
//!
//! Every test starts its own broker on a free loopback port with its own
//! temporary data directory. The clients come from `scripts/test.sh`: kcat
//! from Debian and a virtualenv at the repository root holding
//! confluent-kafka, kafka-python and aiokafka (`GREGOR_PYTHON` names its
//! interpreter). Under `CI=true` a missing client fails the test; elsewhere
//! the test is skipped with a loud message on stderr.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod cluster;

/// The repository root (the parent of this package).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// True when running under CI (`CI=true`): missing clients fail the tests.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports a missing client: panics under CI, otherwise prints a loud
/// notice and returns `None` so that the test can return early.
fn missing<T>(what: &str) -> Option<T> {
    if in_ci() {
        panic!("{what} is missing; scripts/test.sh installs it (CI=true: not skipping)");
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED: {what} is missing. Run scripts/test.sh to install it.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}

/// The `gregor` binary, built from this checkout.
///
/// `GREGOR_BIN` wins when set. Otherwise the binary is (re)built with
/// `cargo build -p runtime --bin gregor` into `CARGO_TARGET_DIR` (or
/// `target/`) once per test process, then copied to a private path so that
/// a concurrent build elsewhere cannot swap it mid-test.
pub fn gregor_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("GREGOR_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = repo_root();
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "runtime", "--bin", "gregor"])
            .current_dir(&root)
            .status()
            .expect("running cargo build for the gregor binary");
        assert!(status.success(), "cargo build of gregor failed: {status}");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|p| if p.is_absolute() { p } else { root.join(p) })
            .unwrap_or_else(|| root.join("target"));
        let built = target.join("debug").join("gregor");
        assert!(built.exists(), "no gregor binary at {}", built.display());
        // One copy per build, shared by every test process of that build
        // (named by the build's size and mtime), so repeated runs do not
        // fill the temp dir with identical copies.
        let meta = fs::metadata(&built).expect("reading the gregor binary's metadata");
        let stamp = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("gregor-e2e-bin-{}-{stamp}", meta.len()));
        let copy = dir.join("gregor");
        if fs::metadata(&copy).ok().map(|m| m.len()) != Some(meta.len()) {
            fs::create_dir_all(&dir).expect("creating the binary copy dir");
            // Copy under a private name, then rename: a process racing us
            // never runs a half-written file.
            let tmp = dir.join(format!("gregor.{}", std::process::id()));
            fs::copy(&built, &tmp).expect("copying the gregor binary");
            fs::rename(&tmp, &copy).expect("publishing the gregor binary copy");
        }
        copy
    })
}

/// Why a spawned broker did not come up.
#[derive(Debug)]
pub enum StartFailure {
    /// It exited first.
    Exited(ExitStatus),
    /// It did not accept connections in time.
    Timeout,
}

/// Waits until the just-spawned `child` accepts connections on `addr`,
/// exits, or `limit` passes.
pub fn wait_accepting(
    child: &mut Child,
    addr: SocketAddr,
    limit: Duration,
) -> Result<(), StartFailure> {
    let deadline = Instant::now() + limit;
    loop {
        if accepts(addr) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(StartFailure::Exited(status));
        }
        if Instant::now() > deadline {
            return Err(StartFailure::Timeout);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

mod ports;
pub use ports::free_port;

/// True when something accepts TCP connections on `addr`.
pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A `gregor broker` process with its own port and data directory.
///
/// Dropping it kills the process (kill -9) and removes the directory.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    overrides: Vec<String>,
}

impl Broker {
    /// Starts a broker on a free port with `overrides` (`key=value`) on top
    /// of the test defaults, and waits until it accepts connections.
    pub fn start(overrides: &[&str]) -> Broker {
        let mut b = Broker {
            child: None,
            port: 0,
            dir: tempfile::Builder::new()
                .prefix("gregor-e2e-")
                .tempdir()
                .expect("creating the broker temp dir"),
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
        };
        let mut last_err = String::new();
        // A free port can be taken between probing and binding: retry.
        for _ in 0..5 {
            b.port = free_port();
            match b.spawn() {
                Ok(()) => return b,
                Err(e) => last_err = e,
            }
        }
        panic!("broker did not start: {last_err}");
    }

    /// The `host:port` clients bootstrap from.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listener address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The broker's data directory (`log.dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file collecting the broker's stderr (all its starts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// The broker's log so far (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("opening broker log: {e}"))?;
        let mut cmd = Command::new(gregor_bin());
        cmd.arg("broker")
            .arg("--override")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{}", self.port))
            .arg("--override")
            .arg(format!("log.dir={}", self.data_dir().display()));
        for o in &self.overrides {
            cmd.arg("--override").arg(o);
        }
        let child = cmd
            .current_dir(self.dir.path())
            .env(
                "RUST_LOG",
                std::env::var("GREGOR_E2E_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", gregor_bin().display()))?;
        self.child = Some(child);
        let addr = self.addr();
        let child = self.child.as_mut().expect("just spawned");
        match wait_accepting(child, addr, Duration::from_secs(20)) {
            Ok(()) => Ok(()),
            Err(StartFailure::Exited(status)) => {
                self.child = None;
                Err(format!(
                    "broker exited at startup ({status}):\n{}",
                    self.log_tail()
                ))
            }
            Err(StartFailure::Timeout) => Err(format!(
                "broker not accepting after 20s:\n{}",
                self.log_tail()
            )),
        }
    }

    /// The process id of the running broker.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker running").id()
    }

    /// True while the broker process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends SIGTERM and waits (up to 30 s) for the process to exit.
    pub fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("running kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().expect("waiting for the broker") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker ignored SIGTERM for 30s:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker with SIGKILL (kill -9) and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("broker running");
        child.kill().expect("kill -9 the broker");
        let _ = child.wait();
    }

    /// Starts the broker again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the broker before restarting it");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The port may linger for a moment after a kill.
                Err(e) if Instant::now() < deadline && e.contains("exited at startup") => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("broker restart failed: {e}"),
            }
        }
    }

    /// Every `.log` segment file of one partition, oldest first.
    pub fn segment_files(&self, topic: &str, partition: i32) -> Vec<PathBuf> {
        let dir = self.data_dir().join(format!("{topic}-{partition}"));
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        files
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// The Python interpreter of the client virtualenv, with every client
/// importable, or `None` (loud skip) outside CI.
pub fn python() -> Option<PathBuf> {
    static PY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PY.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("GREGOR_PYTHON")
            .map(PathBuf::from)
            .into_iter()
            .chain([repo_root().join(".venv/bin/python")])
            .collect();
        for py in &candidates {
            let ok = Command::new(py)
                .args([
                    "-c",
                    "import confluent_kafka, kafka, aiokafka, snappy, lz4, zstandard",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(py.clone());
            }
        }
        Err(format!(
            "a Python with confluent-kafka, kafka-python and aiokafka (tried {candidates:?})"
        ))
    });
    match found {
        Ok(p) => Some(p.clone()),
        Err(what) => missing(what),
    }
}

/// The kcat binary, or `None` (loud skip) outside CI.
pub fn kcat() -> Option<PathBuf> {
    let ok = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(PathBuf::from("kcat"))
    } else {
        missing("kcat (apt-get install kcat)")
    }
}

/// The directory of the Python client drivers.
pub fn clients_dir() -> PathBuf {
    repo_root().join("tests/clients")
}

/// Runs a command to completion with a time limit, capturing its output.
/// Panics (with stdout/stderr) if it exceeds `limit`.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    run_with_input(cmd, None, limit)
}

/// Like [`run_with_timeout`], feeding `input` (if any) to stdin.
pub fn run_with_input(cmd: &mut Command, input: Option<Vec<u8>>, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped");
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for a client") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let s = child.wait().expect("reaping a client");
            let stdout = t_out.join().unwrap_or_default();
            let stderr = t_err.join().unwrap_or_default();
            panic!(
                "{cmd:?} exceeded {limit:?} ({s})\nstdout:\n{}\nstderr:\n{}",
                tail(&stdout),
                tail(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Runs a command and panics with its output (and the broker's log) unless
/// it exits 0.
pub fn run_ok(cmd: &mut Command, limit: Duration, broker: &Broker) -> Output {
    run_ok_input(cmd, None, limit, broker)
}

/// Like [`run_ok`], feeding `input` (if any) to stdin.
pub fn run_ok_input(
    cmd: &mut Command,
    input: Option<Vec<u8>>,
    limit: Duration,
    broker: &Broker,
) -> Output {
    let out = run_with_input(cmd, input, limit);
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({})\nstdout:\n{}\nstderr:\n{}\nbroker log:\n{}",
            out.status,
            tail(&out.stdout),
            tail(&out.stderr),
            broker.log_tail()
        );
    }
    out
}

/// A Python client driver command: `python tests/clients/<script> args…`.
pub fn py_client(python: &Path, script: &str) -> Command {
    let mut c = Command::new(python);
    c.arg("-u").arg(clients_dir().join(script));
    c
}

// ---------------------------------------------------------------------------
// Records exchanged with the client drivers
// ---------------------------------------------------------------------------

/// Key, value and headers of a record.
pub type Payload = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

/// One record as the drivers exchange them (see `tests/clients/common.py`):
/// a tab-separated line `partition offset timestamp key value headers`,
/// with key and value in hex (`-` for null) and headers as
/// `name=hexvalue` joined by `,` (`-` for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Partition (-1: let the producer choose).
    pub partition: i32,
    /// Offset (-1: unknown, e.g. input to a producer).
    pub offset: i64,
    /// Timestamp in ms (-1: unknown or producer's choice).
    pub timestamp: i64,
    /// Key; `None` is a null key.
    pub key: Option<Vec<u8>>,
    /// Value; `None` is a null value.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd hex length: {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("{s:?}: {e}")))
        .collect()
}

impl Rec {
    /// A keyed record with headers for the given sequence number `i`.
    pub fn keyed(i: usize) -> Rec {
        Rec {
            partition: -1,
            offset: -1,
            timestamp: -1,
            key: Some(format!("key-{i:06}").into_bytes()),
            value: Some(format!("value-{i:06}-{}", "x".repeat(i % 37)).into_bytes()),
            headers: vec![
                ("seq".to_string(), i.to_string().into_bytes()),
                ("kind".to_string(), vec![b'e', b'2', b'e', (i % 251) as u8]),
            ],
        }
    }

    /// Formats the record as one driver line (no trailing newline).
    pub fn to_line(&self) -> String {
        let opt = |b: &Option<Vec<u8>>| b.as_deref().map(hex).unwrap_or_else(|| "-".into());
        let headers = if self.headers.is_empty() {
            "-".to_string()
        } else {
            self.headers
                .iter()
                .map(|(k, v)| format!("{k}={}", hex(v)))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            self.partition,
            self.offset,
            self.timestamp,
            opt(&self.key),
            opt(&self.value),
            headers
        )
    }

    /// Parses one driver line.
    pub fn parse(line: &str) -> Result<Rec, String> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            return Err(format!("expected 6 fields: {line:?}"));
        }
        let num = |s: &str| s.parse::<i64>().map_err(|e| format!("{s:?}: {e}"));
        let opt = |s: &str| -> Result<Option<Vec<u8>>, String> {
            if s == "-" {
                Ok(None)
            } else {
                unhex(s).map(Some)
            }
        };
        let headers = if f[5] == "-" {
            Vec::new()
        } else {
            f[5].split(',')
                .map(|h| {
                    let (k, v) = h.split_once('=').ok_or_else(|| format!("header {h:?}"))?;
                    Ok((k.to_string(), unhex(v)?))
                })
                .collect::<Result<_, String>>()?
        };
        Ok(Rec {
            partition: num(f[0])? as i32,
            offset: num(f[1])?,
            timestamp: num(f[2])?,
            key: opt(f[3])?,
            value: opt(f[4])?,
            headers,
        })
    }

    /// The record with partition, offset and timestamp cleared, for
    /// comparing payloads.
    pub fn payload(&self) -> Payload {
        (self.key.clone(), self.value.clone(), self.headers.clone())
    }
}

/// Writes records to a driver input file.
pub fn write_recs(path: &Path, recs: &[Rec]) -> io::Result<()> {
    let mut f = io::BufWriter::new(fs::File::create(path)?);
    for r in recs {
        writeln!(f, "{}", r.to_line())?;
    }
    f.flush()
}

/// Parses driver output (lines that do not start with a digit or `-` are
/// ignored, so drivers may print progress lines starting with `#`).
pub fn parse_recs(text: &[u8]) -> Vec<Rec> {
    String::from_utf8_lossy(text)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| Rec::parse(l).unwrap_or_else(|e| panic!("bad driver line: {e}")))
        .collect()
}

/// Checks that `consumed` holds exactly the `produced` records (as
/// acknowledged, with their partitions and offsets), in per-partition
/// offset order, and that each partition's records keep the order in which
/// they were sent. Returns a description of the first difference.
pub fn check_same(produced: &[Rec], consumed: &[Rec]) -> Result<(), String> {
    if produced.len() != consumed.len() {
        return Err(format!(
            "produced {} records, consumed {}",
            produced.len(),
            consumed.len()
        ));
    }
    let mut by_part: std::collections::BTreeMap<i32, Vec<&Rec>> = Default::default();
    for r in consumed {
        by_part.entry(r.partition).or_default().push(r);
    }
    for (p, recs) in &by_part {
        for w in recs.windows(2) {
            if w[1].offset <= w[0].offset {
                return Err(format!(
                    "partition {p}: offsets out of order: {} then {}",
                    w[0].offset, w[1].offset
                ));
            }
        }
    }
    let mut want: Vec<&Rec> = produced.iter().collect();
    want.sort_by_key(|r| (r.partition, r.offset));
    let mut got: Vec<&Rec> = consumed.iter().collect();
    got.sort_by_key(|r| (r.partition, r.offset));
    for (w, g) in want.iter().zip(&got) {
        if (w.partition, w.offset) != (g.partition, g.offset) || w.payload() != g.payload() {
            return Err(format!(
                "record differs:\n  acked:    {}\n  consumed: {}",
                w.to_line(),
                g.to_line()
            ));
        }
    }
    Ok(())
}

/// Checks that, within each partition, acknowledged offsets follow the
/// order in which the records were sent (`sent` gives each record's
/// sequence number in the `seq` header).
pub fn check_send_order(acked: &[Rec]) -> Result<(), String> {
    let mut last: std::collections::BTreeMap<i32, (i64, u64)> = Default::default();
    let mut sorted: Vec<&Rec> = acked.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in sorted {
        let seq = seq_of(r).ok_or_else(|| format!("no seq header: {}", r.to_line()))?;
        if let Some((off, prev)) = last.get(&r.partition)
            && seq <= *prev
        {
            return Err(format!(
                "partition {}: seq {seq} at offset {} follows seq {prev} at offset {off}",
                r.partition, r.offset
            ));
        }
        last.insert(r.partition, (r.offset, seq));
    }
    Ok(())
}

/// The `seq` header of a record as a number.
pub fn seq_of(r: &Rec) -> Option<u64> {
    r.headers
        .iter()
        .find(|(k, _)| k == "seq")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
}

/// librdkafka's default partitioner for a non-empty key
/// (`consistent_random`: CRC-32 of the key modulo the partition count).
pub fn librdkafka_partition(key: &[u8], partitions: u32) -> i32 {
    (crc32fast::hash(key) % partitions) as i32
}

/// Kafka's murmur2 (the Java client's and kafka-python's default
/// partitioner for keyed records): `toPositive(murmur2(key)) % n`.
pub fn murmur2_partition(key: &[u8], partitions: u32) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = key.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = len / 4;
    for i in 0..chunks {
        let mut k =
            u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = &key[chunks * 4..];
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions) as i32
}

// ---------------------------------------------------------------------------
// Driving the Python clients
// ---------------------------------------------------------------------------

/// How long one client invocation may take before the test fails.
pub const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// Produces `recs` to `topic` with a Python driver (`confluent.py`,
/// `kafka_python.py`, `aiokafka_client.py`) and returns the acknowledged
/// records (with partition, offset and timestamp) in acknowledgement order.
/// `extra` are further driver options (`--acks 1`, `--compression gzip`, …).
pub fn py_produce(
    python: &Path,
    driver: &str,
    broker: &Broker,
    topic: &str,
    recs: &[Rec],
    extra: &[&str],
) -> Vec<Rec> {
    let input = broker
        .dir
        .path()
        .join(format!("in-{topic}-{}.txt", unique()));
    write_recs(&input, recs).expect("writing the driver input");
    let out = run_ok(
        py_client(python, driver)
            .args([
                "produce",
                "--bootstrap",
                &broker.bootstrap(),
                "--topic",
                topic,
            ])
            .arg("--input")
            .arg(&input)
            .args(extra),
        CLIENT_LIMIT,
        broker,
    );
    parse_recs(&out.stdout)
}

/// Consumes `count` records from the beginning of `partitions` partitions
/// of `topic` with a Python driver.
pub fn py_consume(
    python: &Path,
    driver: &str,
    broker: &Broker,
    topic: &str,
    partitions: u32,
    count: usize,
    extra: &[&str],
) -> Vec<Rec> {
    let out = run_ok(
        py_client(python, driver)
            .args([
                "consume",
                "--bootstrap",
                &broker.bootstrap(),
                "--topic",
                topic,
            ])
            .args(["--partitions", &partitions.to_string()])
            .args(["--count", &count.to_string()])
            .args(extra),
        CLIENT_LIMIT,
        broker,
    );
    parse_recs(&out.stdout)
}

/// A number distinct for every call in this process.
pub fn unique() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// `n` keyed records with headers (see [`Rec::keyed`]).
pub fn keyed_records(n: usize) -> Vec<Rec> {
    (0..n).map(Rec::keyed).collect()
}

/// Asserts that `consumed` is exactly `acked`, records sent in order per
/// partition, with the broker log on failure.
pub fn assert_same(broker: &Broker, acked: &[Rec], consumed: &[Rec]) {
    if let Err(e) = check_same(acked, consumed).and_then(|()| check_send_order(acked)) {
        panic!("{e}\nbroker log:\n{}", broker.log_tail());
    }
}

/// The magic byte (offset 16) of the first entry of a segment file.
pub fn first_magic(segment: &Path) -> u8 {
    let bytes = fs::read(segment).unwrap_or_else(|e| panic!("{}: {e}", segment.display()));
    assert!(bytes.len() > 16, "{} holds no entry", segment.display());
    bytes[16]
}

/// A client running in the background with stdout and stderr in files.
#[derive(Debug)]
pub struct Background {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Background {
    /// Spawns `cmd` with its output in files under `dir`.
    pub fn spawn(cmd: &mut Command, dir: &Path) -> Background {
        let n = unique();
        let out = dir.join(format!("bg-{n}.out"));
        let err = dir.join(format!("bg-{n}.err"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("creating stdout file"))
            .stderr(fs::File::create(&err).expect("creating stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        Background { child, out, err }
    }

    /// Waits (up to `limit`) and returns exit status, stdout and stderr;
    /// kills the client and panics on timeout.
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, Vec<u8>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("waiting for a client") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "background client exceeded {limit:?}; stderr:\n{}",
                    fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = fs::read(&self.out).unwrap_or_default();
        let err = fs::read_to_string(&self.err).unwrap_or_default();
        (status, out, err)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until the number in a driver's `--progress` file reaches `n`.
pub fn wait_progress(file: &Path, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got: u64 = fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "progress stuck at {got} of {n} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The broker's scratch directory (outside the data directory), for
/// driver inputs, outputs and progress files.
impl Broker {
    /// A scratch path next to the data directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

// ---------------------------------------------------------------------------
// Consumer groups
// ---------------------------------------------------------------------------

impl Background {
    /// What the client has written to stdout so far (it keeps running).
    pub fn stdout_so_far(&self) -> Vec<u8> {
        fs::read(&self.out).unwrap_or_default()
    }

    /// Kills the client with SIGKILL, reaps it and returns its stdout.
    pub fn kill9(mut self) -> Vec<u8> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        fs::read(&self.out).unwrap_or_default()
    }
}

/// What a `group-consume` driver run printed: its records, the partitions
/// it owned after its last rebalance, and its last commit per partition.
#[derive(Debug, Clone, Default)]
pub struct GroupRun {
    /// Records received, in arrival order.
    pub records: Vec<Rec>,
    /// Partitions owned after the last `# assign` / `# revoke` line
    /// (`None` before the first assignment).
    pub owned: Option<std::collections::BTreeSet<i32>>,
    /// Every partition the member was ever assigned.
    pub ever_owned: std::collections::BTreeSet<i32>,
    /// The last committed position (next offset to read) per partition.
    pub commits: std::collections::BTreeMap<i32, i64>,
}

fn partition_list(s: &str) -> std::collections::BTreeSet<i32> {
    if s == "-" {
        return Default::default();
    }
    s.split(',')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|e| panic!("bad partition {p:?}: {e}"))
        })
        .collect()
}

impl GroupRun {
    /// Parses the stdout of a `group-consume` run (`# assign P,…`,
    /// `# revoke P,…`, `# commit P OFFSET` and record lines). A trailing
    /// partial line (a client killed mid-write) is ignored.
    pub fn parse(out: &[u8]) -> GroupRun {
        let text = String::from_utf8_lossy(out);
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        let mut run = GroupRun::default();
        for line in complete.lines() {
            if let Some(rest) = line.strip_prefix("# assign ") {
                let set = partition_list(rest.trim());
                run.ever_owned.extend(set.iter().copied());
                run.owned = Some(set);
            } else if let Some(rest) = line.strip_prefix("# revoke ") {
                let gone = partition_list(rest.trim());
                if let Some(o) = run.owned.as_mut() {
                    o.retain(|p| !gone.contains(p));
                }
            } else if let Some(rest) = line.strip_prefix("# commit ") {
                let mut f = rest.split_whitespace();
                if let (Some(p), Some(o)) = (f.next(), f.next())
                    && let (Ok(p), Ok(o)) = (p.parse::<i32>(), o.parse::<i64>())
                {
                    let e = run.commits.entry(p).or_insert(o);
                    *e = (*e).max(o);
                }
            } else if !line.is_empty() && !line.starts_with('#') {
                run.records
                    .push(Rec::parse(line).unwrap_or_else(|e| panic!("bad driver line: {e}")));
            }
        }
        run
    }
}

/// A `group-consume` command of a Python driver: member of `group`
/// subscribed to `topic`, with further driver options in `extra`.
pub fn py_group_consume(
    python: &Path,
    driver: &str,
    broker: &Broker,
    group: &str,
    topic: &str,
    extra: &[&str],
) -> Command {
    let mut c = py_client(python, driver);
    c.args([
        "group-consume",
        "--bootstrap",
        &broker.bootstrap(),
        "--topic",
        topic,
        "--group",
        group,
    ])
    .args(extra);
    c
}

/// Polls `cond` every 50 ms until it holds, panicking with `what` after
/// `limit`; returns how long it took.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates `topic` with `partitions` partitions through confluent-kafka's
/// AdminClient.
pub fn create_topic(python: &Path, broker: &Broker, topic: &str, partitions: u32) {
    run_ok(
        py_client(python, "confluent.py")
            .args(["create-topic", "--bootstrap", &broker.bootstrap()])
            .args(["--topic", topic, "--partitions", &partitions.to_string()]),
        CLIENT_LIMIT,
        broker,
    );
}
