//! The cluster harness: a real ZooKeeper (Debian's `zookeeper` package), N
//! `gregor broker` processes in ZooKeeper mode on loopback, fault-injecting
//! TCP proxies between them, a long-running acks=all producer and a
//! consumer (`tests/clients/cluster_client.py`), and the checker that
//! compares what was acknowledged with what was consumed (spec: E2E-16).
//!
//! Every broker reaches ZooKeeper through its own [`Proxy`], and advertises
//! its `REPLICATION` listener (`inter.broker.listener.name`) through a
//! second proxy in front of the real one, so that a test can cut a broker
//! off from ZooKeeper and from its peers (both directions: the proxies can
//! drop connections by the process that opened them) and heal it again.
//! Clients use the `PLAINTEXT` listener directly.
//!
//! Cluster tests run one at a time within a test binary (the machine has
//! two cores; a cluster is four processes plus clients). Dropping a
//! [`Cluster`] or [`ZooKeeper`] kills every process it started; a watchdog
//! shell kills them too if the test process itself dies.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{
    Background, Rec, check_send_order, free_port, gregor_bin, in_ci, py_client, python,
    run_with_timeout, seq_of, unique,
};

/// `zookeeper.session.timeout.ms` of every cluster broker.
pub const SESSION_TIMEOUT: Duration = Duration::from_millis(6000);

/// The chroot under which the brokers keep their znodes.
pub const CHROOT: &str = "/gregor";

/// A topic that never exists: Metadata about it lists the brokers and the
/// controller only.
pub const PROBE_TOPIC: &str = "gregor-e2e-no-such-topic";

/// How long one metadata or admin call through the Python client may take.
const ADMIN_LIMIT: Duration = Duration::from_secs(30);

fn skip_or_fail<T>(what: &str) -> Option<T> {
    if in_ci() {
        panic!("{what} is missing; scripts/test.sh installs it (CI=true: not skipping)");
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED: {what} is missing. Run scripts/test.sh (as root) to install it.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

// ---------------------------------------------------------------------------
// Reaper: no stray processes even if the test process is killed
// ---------------------------------------------------------------------------

/// A watchdog shell that kills every tracked process once the test
/// process has gone (a test binary killed by a timeout runs no `Drop`).
#[derive(Debug)]
struct Reaper {
    pidfile: PathBuf,
    pids: Mutex<BTreeSet<u32>>,
    child: Mutex<Option<Child>>,
}

impl Reaper {
    fn start(dir: &Path) -> Arc<Reaper> {
        let pidfile = dir.join("reaper.pids");
        fs::write(&pidfile, "").expect("creating the reaper pid file");
        let child = Command::new("sh")
            .arg("-c")
            .arg(
                "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
                 kill -9 $(cat \"$2\") 2>/dev/null",
            )
            .arg("gregor-e2e-reaper")
            .arg(std::process::id().to_string())
            .arg(&pidfile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Arc::new(Reaper {
            pidfile,
            pids: Mutex::new(BTreeSet::new()),
            child: Mutex::new(child),
        })
    }

    fn update(&self, f: impl FnOnce(&mut BTreeSet<u32>)) {
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut pids);
        let text: Vec<String> = pids.iter().map(u32::to_string).collect();
        let tmp = self.pidfile.with_extension("tmp");
        if fs::write(&tmp, text.join(" ")).is_ok() {
            let _ = fs::rename(&tmp, &self.pidfile);
        }
    }

    fn track(&self, pid: u32) {
        self.update(|p| {
            p.insert(pid);
        });
    }

    fn untrack(&self, pid: u32) {
        self.update(|p| {
            p.remove(&pid);
        });
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Kills (SIGKILL) and reaps a child, untracking it.
fn kill_child(child: &mut Child, reaper: &Reaper) {
    let _ = child.kill();
    let _ = child.wait();
    reaper.untrack(child.id());
}

// ---------------------------------------------------------------------------
// ZooKeeper
// ---------------------------------------------------------------------------

/// The Java class path holding Debian's ZooKeeper, or `None` when java or
/// the `zookeeper` package is missing.
pub fn zookeeper_classpath() -> Option<String> {
    let java_ok = Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let dir = Path::new("/usr/share/java");
    if !java_ok || !dir.join("zookeeper.jar").exists() {
        return None;
    }
    let mut jars: Vec<String> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jar"))
        .map(|p| p.display().to_string())
        .collect();
    jars.sort();
    Some(jars.join(":"))
}

/// A standalone ZooKeeper server on a free loopback port with its own data
/// directory; restartable on the same port and data.
#[derive(Debug)]
pub struct ZooKeeper {
    port: u16,
    dir: TempDir,
    classpath: String,
    child: Option<Child>,
    reaper: Arc<Reaper>,
}

impl ZooKeeper {
    /// Starts ZooKeeper and waits until it serves, or returns `None` (a
    /// loud skip; a failure under CI) when it is not installed.
    pub fn start() -> Option<ZooKeeper> {
        let Some(classpath) = zookeeper_classpath() else {
            return skip_or_fail("ZooKeeper (apt-get install zookeeper; java)");
        };
        let dir = tempfile::Builder::new()
            .prefix("gregor-zk-")
            .tempdir()
            .expect("creating the ZooKeeper temp dir");
        let reaper = Reaper::start(dir.path());
        let mut zk = ZooKeeper {
            port: 0,
            dir,
            classpath,
            child: None,
            reaper,
        };
        let mut last = String::new();
        for _ in 0..3 {
            zk.port = free_port();
            match zk.spawn() {
                Ok(()) => return Some(zk),
                Err(e) => last = e,
            }
        }
        panic!("ZooKeeper did not start: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("opening the ZooKeeper log: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("java")
            .args([
                "-Xmx192m",
                "-XX:+UseSerialGC",
                "-Dzookeeper.admin.enableServer=false",
                "-Dzookeeper.4lw.commands.whitelist=*",
                "-cp",
                &self.classpath,
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                &self.port.to_string(),
            ])
            .arg(self.dir.path().join("data"))
            // tickTime 1000 ms: sessions of 2 s to 20 s, expiry checked every
            // second.
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawning java: {e}"))?;
        self.reaper.track(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.srvr().is_some_and(|s| s.contains("Mode:")) {
                return Ok(());
            }
            let child = self.child.as_mut().expect("just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.reaper.untrack(child.id());
                self.child = None;
                return Err(format!(
                    "ZooKeeper exited at startup ({status}):\n{}",
                    self.log_tail()
                ));
            }
            if Instant::now() > deadline {
                let mut c = self.child.take().expect("running");
                kill_child(&mut c, &self.reaper);
                return Err(format!(
                    "ZooKeeper not serving after 30s:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The answer to the `srvr` four-letter command, if ZooKeeper answers.
    pub fn srvr(&self) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(300)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"srvr").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `zookeeper.connect` for a direct connection with the cluster chroot.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}{CHROOT}", self.port)
    }

    /// The server's process id (panics when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("ZooKeeper running").id()
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server with SIGKILL.
    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("ZooKeeper running");
        kill_child(&mut c, &self.reaper);
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop ZooKeeper before restarting it");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline && e.contains("exited at startup") => {
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => panic!("ZooKeeper restart failed: {e}"),
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("zookeeper.log")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        tail_of(&self.log_path(), 30)
    }

    /// Runs ZooKeeper's own command-line client (`zkCli`) with `args`
    /// (e.g. `["get", "/gregor/controller"]`) against this server (no
    /// chroot) and returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        run_with_timeout(
            Command::new("java")
                .args([
                    "-Xmx64m",
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    "-cp",
                    &self.classpath,
                    "org.apache.zookeeper.ZooKeeperMain",
                    "-server",
                    &format!("127.0.0.1:{}", self.port),
                ])
                .args(args),
            Duration::from_secs(60),
        )
    }

    /// The data of znode `path` (no chroot applied), if it exists.
    pub fn get(&self, path: &str) -> Option<String> {
        let out = self.cli(&["get", path]);
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || text.contains("Node does not exist") {
            return None;
        }
        // zkCli prints the data on the last non-empty line.
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_child(&mut c, &self.reaper);
        }
    }
}

// ---------------------------------------------------------------------------
// Proxy
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Conn {
    id: u64,
    /// The client's address as the proxy sees it.
    peer: SocketAddr,
    down: TcpStream,
    up: TcpStream,
}

impl Conn {
    fn close(&self) {
        let _ = self.down.shutdown(Shutdown::Both);
        let _ = self.up.shutdown(Shutdown::Both);
    }
}

#[derive(Debug, Default)]
struct ProxyState {
    cut_all: bool,
    cut_pids: BTreeSet<u32>,
    conns: Vec<Conn>,
    next: u64,
    accepted: u64,
    refused: u64,
}

#[derive(Debug)]
struct ProxyShared {
    listen: SocketAddr,
    target: SocketAddr,
    stop: AtomicBool,
    state: Mutex<ProxyState>,
}

impl ProxyShared {
    fn state(&self) -> MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A fault-injecting TCP proxy on a free loopback port in front of
/// `target`. [`Proxy::cut`] closes every connection and refuses new ones
/// (accepts and closes them at once) until [`Proxy::heal`];
/// [`Proxy::cut_from`] does the same only for connections opened by one
/// process (found through `/proc`).
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<ProxyShared>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy forwarding to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let (listener, listen) = loop {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if let Ok(l) = TcpListener::bind(addr) {
                break (l, addr);
            }
        };
        let shared = Arc::new(ProxyShared {
            listen,
            target,
            stop: AtomicBool::new(false),
            state: Mutex::new(ProxyState::default()),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{}", listen.port()))
            .spawn(move || accept_loop(&s, listener))
            .expect("spawning the proxy thread");
        Proxy {
            shared,
            thread: Some(thread),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.shared.listen.port()
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// Closes every open connection and refuses new ones until healed.
    pub fn cut(&self) {
        let mut st = self.shared.state();
        st.cut_all = true;
        for c in st.conns.drain(..) {
            c.close();
        }
    }

    /// Closes the connections opened by process `pid` and refuses its new
    /// ones until healed; other processes keep their connections.
    pub fn cut_from(&self, pid: u32) {
        let mut st = self.shared.state();
        st.cut_pids.insert(pid);
        let listen = self.shared.listen;
        st.conns.retain(|c| {
            if socket_owner(c.peer, listen, &[pid]).is_some() {
                c.close();
                false
            } else {
                true
            }
        });
    }

    /// Lets every connection through again.
    pub fn heal(&self) {
        let mut st = self.shared.state();
        st.cut_all = false;
        st.cut_pids.clear();
    }

    /// Connections currently open through the proxy.
    pub fn open_connections(&self) -> usize {
        self.shared.state().conns.len()
    }

    /// Connections accepted and forwarded, and connections refused, so far.
    pub fn counts(&self) -> (u64, u64) {
        let st = self.shared.state();
        (st.accepted, st.refused)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.shared.listen, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in self.shared.state().conns.drain(..) {
            c.close();
        }
    }
}

fn accept_loop(shared: &Arc<ProxyShared>, listener: TcpListener) {
    for down in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(down) = down else { continue };
        let Ok(peer) = down.peer_addr() else { continue };
        let refuse = {
            let st = shared.state();
            st.cut_all || {
                let pids: Vec<u32> = st.cut_pids.iter().copied().collect();
                !pids.is_empty() && socket_owner(peer, shared.listen, &pids).is_some()
            }
        };
        if refuse {
            let _ = down.shutdown(Shutdown::Both);
            shared.state().refused += 1;
            continue;
        }
        let Ok(up) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(2)) else {
            let _ = down.shutdown(Shutdown::Both);
            continue;
        };
        let _ = down.set_nodelay(true);
        let _ = up.set_nodelay(true);
        let (Ok(d2), Ok(u2), Ok(d3), Ok(u3)) = (
            down.try_clone(),
            up.try_clone(),
            down.try_clone(),
            up.try_clone(),
        ) else {
            continue;
        };
        let id = {
            let mut st = shared.state();
            st.next += 1;
            st.accepted += 1;
            let id = st.next;
            st.conns.push(Conn {
                id,
                peer,
                down: d3,
                up: u3,
            });
            id
        };
        let s1 = shared.clone();
        let s2 = shared.clone();
        std::thread::spawn(move || pump(down, up, id, &s1));
        std::thread::spawn(move || pump(u2, d2, id, &s2));
    }
}

/// Copies `from` to `to` until either side closes, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream, id: u64, shared: &ProxyShared) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.state().conns.retain(|c| c.id != id);
}

/// `127.0.0.1:port` as `/proc/net/tcp` writes it (`0100007F:1F90`).
fn proc_addr(a: SocketAddr) -> Option<String> {
    let SocketAddr::V4(v4) = a else { return None };
    let ip = u32::from_le_bytes(v4.ip().octets());
    Some(format!("{ip:08X}:{:04X}", v4.port()))
}

/// Which of `pids` owns the client end of the loopback connection from
/// `peer` to `listen`, found through `/proc/net/tcp` and `/proc/PID/fd`.
pub fn socket_owner(peer: SocketAddr, listen: SocketAddr, pids: &[u32]) -> Option<u32> {
    let (local, remote) = (proc_addr(peer)?, proc_addr(listen)?);
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[1] == local && f[2] == remote).then(|| f[9].to_string())
    })?;
    let want = format!("socket:[{inode}]");
    pids.iter().copied().find(|pid| {
        fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == want.as_str()))
        })
    })
}

// ---------------------------------------------------------------------------
// Brokers and the cluster
// ---------------------------------------------------------------------------

/// One `gregor broker` of a [`Cluster`].
#[derive(Debug)]
pub struct Node {
    /// `broker.id`.
    pub id: i32,
    port: u16,
    repl_port: u16,
    /// The proxy other brokers reach this broker's replication listener
    /// through (advertised as its `REPLICATION` listener).
    pub repl_proxy: Proxy,
    /// The proxy this broker reaches ZooKeeper through.
    pub zk_proxy: Proxy,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// The client (`PLAINTEXT`) address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The client listener address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The broker's `log.dirs`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The broker's log file (every start appends).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    /// The last lines of the broker's log.
    pub fn log_tail(&self) -> String {
        tail_of(&self.log_path(), 40)
    }

    /// True while the broker process is up (even if stopped by SIGSTOP).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn write_config(&self, zk_port_of_proxy: u16, extra: &[String]) {
        let mut lines = vec![
            format!("broker.id={}", self.id),
            format!(
                "listeners=PLAINTEXT://127.0.0.1:{},REPLICATION://127.0.0.1:{}",
                self.port, self.repl_port
            ),
            format!(
                "advertised.listeners=PLAINTEXT://127.0.0.1:{},REPLICATION://127.0.0.1:{}",
                self.port,
                self.repl_proxy.port()
            ),
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,REPLICATION:PLAINTEXT".into(),
            "inter.broker.listener.name=REPLICATION".into(),
            format!("log.dirs={}", self.data_dir().display()),
            format!("zookeeper.connect=127.0.0.1:{zk_port_of_proxy}{CHROOT}"),
            format!(
                "zookeeper.session.timeout.ms={}",
                SESSION_TIMEOUT.as_millis()
            ),
            "num.partitions=3".into(),
            "default.replication.factor=3".into(),
            "min.insync.replicas=2".into(),
            "offsets.topic.replication.factor=3".into(),
            "offsets.topic.num.partitions=6".into(),
            "replica.lag.time.max.ms=3000".into(),
            "replica.fetch.wait.max.ms=200".into(),
            "leader.imbalance.check.interval.seconds=5".into(),
            "group.initial.rebalance.delay.ms=0".into(),
            "unclean.leader.election.enable=false".into(),
        ];
        lines.extend(extra.iter().cloned());
        fs::write(self.config_path(), lines.join("\n") + "\n").expect("writing server.properties");
    }
}

static SERIAL: Mutex<()> = Mutex::new(());

/// What the brokers say about the cluster (Metadata through librdkafka).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// `controller_id` (-1: none known).
    pub controller: i32,
    /// Registered brokers.
    pub brokers: BTreeSet<i32>,
    /// Each broker's address (`host:port`) as given to this client.
    pub addrs: BTreeMap<i32, String>,
    /// Per (topic, partition): leader, replicas, ISR.
    pub partitions: BTreeMap<(String, i32), PartMeta>,
    /// Topics answered with an error.
    pub topic_errors: Vec<String>,
}

/// One partition's leader, replicas and ISR as Metadata reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartMeta {
    /// Leader broker id (-1: none).
    pub leader: i32,
    /// Assigned replicas, in order.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
}

impl PartMeta {
    /// True when every assigned replica is in sync and there is a leader.
    pub fn fully_in_sync(&self) -> bool {
        let r: BTreeSet<i32> = self.replicas.iter().copied().collect();
        let i: BTreeSet<i32> = self.isr.iter().copied().collect();
        self.leader >= 0 && !r.is_empty() && r == i
    }
}

fn id_list(s: &str) -> Vec<i32> {
    if s == "-" {
        return Vec::new();
    }
    s.split(',').filter_map(|x| x.parse().ok()).collect()
}

impl Meta {
    /// Parses the output of `cluster_client.py metadata`.
    pub fn parse(text: &str) -> Meta {
        let mut m = Meta {
            controller: -1,
            ..Meta::default()
        };
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["controller", id] => m.controller = id.parse().unwrap_or(-1),
                ["broker", id, rest @ ..] => {
                    if let Ok(id) = id.parse() {
                        m.brokers.insert(id);
                        if let [host, port] = rest {
                            m.addrs.insert(id, format!("{host}:{port}"));
                        }
                    }
                }
                ["partition", topic, p, leader, replicas, isr] => {
                    m.partitions.insert(
                        (topic.to_string(), p.parse().unwrap_or(-1)),
                        PartMeta {
                            leader: leader.parse().unwrap_or(-1),
                            replicas: id_list(replicas),
                            isr: id_list(isr),
                        },
                    );
                }
                ["topic-error", rest @ ..] => m.topic_errors.push(rest.join(" ")),
                _ => {}
            }
        }
        m
    }

    /// The partitions of `topic`, by index.
    pub fn topic(&self, topic: &str) -> BTreeMap<i32, &PartMeta> {
        self.partitions
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|((_, p), m)| (*p, m))
            .collect()
    }

    /// One partition.
    pub fn part(&self, topic: &str, partition: i32) -> Option<&PartMeta> {
        self.partitions.get(&(topic.to_string(), partition))
    }
}

/// A ZooKeeper server and N brokers in ZooKeeper mode (ids 1..=N).
#[derive(Debug)]
pub struct Cluster {
    /// The ZooKeeper server (restartable).
    pub zk: ZooKeeper,
    nodes: Vec<Node>,
    python: PathBuf,
    dir: TempDir,
    extra: Vec<String>,
    reaper: Arc<Reaper>,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts ZooKeeper and `n` brokers and waits until Metadata lists all
    /// of them. `None` (a loud skip; a failure under CI) when ZooKeeper or
    /// the Python clients are missing.
    pub fn start(n: usize) -> Option<Cluster> {
        Cluster::start_with(n, &[])
    }

    /// Like [`Cluster::start`] with extra `key=value` lines appended to
    /// every broker's `server.properties`.
    pub fn start_with(n: usize, extra: &[&str]) -> Option<Cluster> {
        let c = Cluster::start_registered(n, extra)?;
        c.wait_meta(Duration::from_secs(30), "a controller elected", None, |m| {
            m.controller >= 0
        });
        Some(c)
    }

    /// Starts ZooKeeper and `n` brokers and waits only until Metadata
    /// lists all of them (not for a controller).
    pub fn start_registered(n: usize, extra: &[&str]) -> Option<Cluster> {
        let python = python()?;
        zookeeper_classpath()
            .or_else(|| skip_or_fail("ZooKeeper (apt-get install zookeeper; java)"))?;
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let zk = ZooKeeper::start()?;
        let reaper = zk.reaper.clone();
        let mut c = Cluster {
            zk,
            nodes: Vec::new(),
            python,
            dir: tempfile::Builder::new()
                .prefix("gregor-cluster-")
                .tempdir()
                .expect("creating the cluster temp dir"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            reaper,
            _serial: serial,
        };
        for _ in 0..n {
            c.add_broker();
        }
        c.wait_meta(
            Duration::from_secs(60),
            "every broker registered",
            None,
            |m| m.brokers.len() == n,
        );
        Some(c)
    }

    /// The client driver's Python interpreter.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// A scratch path in the cluster's temporary directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts one more broker (id = number of brokers + 1) and returns its
    /// id; it registers in the background.
    pub fn add_broker(&mut self) -> i32 {
        let id = self.nodes.len() as i32 + 1;
        let dir = self.dir.path().join(format!("broker-{id}"));
        fs::create_dir_all(&dir).expect("creating the broker dir");
        let repl_port = free_port();
        let node = Node {
            id,
            port: free_port(),
            repl_port,
            repl_proxy: Proxy::start(SocketAddr::from(([127, 0, 0, 1], repl_port))),
            zk_proxy: Proxy::start(self.zk.addr()),
            dir,
            child: None,
        };
        node.write_config(node.zk_proxy.port(), &self.extra);
        self.nodes.push(node);
        self.spawn(id)
            .unwrap_or_else(|e| panic!("broker {id} did not start: {e}"));
        id
    }

    fn spawn(&mut self, id: i32) -> Result<(), String> {
        let reaper = self.reaper.clone();
        let node = self.node_mut(id);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_path())
            .map_err(|e| format!("opening the broker log: {e}"))?;
        let child = Command::new(gregor_bin())
            .arg("broker")
            .arg("--config")
            .arg(node.config_path())
            .current_dir(&node.dir)
            .env(
                "RUST_LOG",
                std::env::var("GREGOR_E2E_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", gregor_bin().display()))?;
        reaper.track(child.id());
        node.child = Some(child);
        let addr = node.addr();
        let child = node.child.as_mut().expect("just spawned");
        match crate::wait_accepting(child, addr, Duration::from_secs(30)) {
            Ok(()) => Ok(()),
            Err(crate::StartFailure::Exited(status)) => {
                reaper.untrack(child.id());
                node.child = None;
                Err(format!(
                    "broker {id} exited at startup ({status}):\n{}",
                    node.log_tail()
                ))
            }
            Err(crate::StartFailure::Timeout) => Err(format!(
                "broker {id} not accepting after 30s:\n{}",
                node.log_tail()
            )),
        }
    }

    /// Broker `id`.
    pub fn node(&self, id: i32) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no broker {id}"))
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no broker {id}"))
    }

    /// Every broker id.
    pub fn ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The process id of broker `id` (panics when it is down).
    pub fn pid(&self, id: i32) -> u32 {
        self.node(id)
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("broker {id} is down"))
            .id()
    }

    /// The client addresses of every broker, comma-separated (what a
    /// client bootstraps from).
    pub fn bootstrap(&self) -> String {
        self.bootstrap_of(&self.ids())
    }

    /// The client addresses of the given brokers.
    pub fn bootstrap_of(&self, ids: &[i32]) -> String {
        ids.iter()
            .map(|&id| self.node(id).bootstrap())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Brokers whose process is up.
    pub fn up(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// Kills broker `id` with SIGKILL.
    pub fn kill9(&mut self, id: i32) {
        let reaper = self.reaper.clone();
        let mut c = self
            .node_mut(id)
            .child
            .take()
            .unwrap_or_else(|| panic!("broker {id} is already down"));
        kill_child(&mut c, &reaper);
    }

    /// Sends SIGTERM to broker `id` and waits (up to 30 s) for it to exit.
    pub fn sigterm(&mut self, id: i32) -> ExitStatus {
        let reaper = self.reaper.clone();
        let node = self.node_mut(id);
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("broker {id} is already down"));
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().expect("waiting for the broker") {
                reaper.untrack(child.id());
                return s;
            }
            if Instant::now() > deadline {
                kill_child(&mut child, &reaper);
                panic!("broker {id} ignored SIGTERM for 30s:\n{}", node.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes broker `id` (SIGSTOP): it keeps its sockets but answers
    /// nothing, as a long GC pause or a stalled VM would.
    pub fn sigstop(&self, id: i32) {
        signal(self.pid(id), "STOP");
    }

    /// Resumes a broker frozen by [`Cluster::sigstop`].
    pub fn sigcont(&self, id: i32) {
        signal(self.pid(id), "CONT");
    }

    /// Starts broker `id` again with the same ports, config and data.
    pub fn restart(&mut self, id: i32) {
        assert!(
            self.node(id).child.is_none(),
            "stop broker {id} before restarting it"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.spawn(id) {
                Ok(()) => return,
                // The port may linger for a moment after a kill.
                Err(e) if Instant::now() < deadline && e.contains("exited at startup") => {
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => panic!("broker {id} restart failed: {e}"),
            }
        }
    }

    /// Cuts broker `id` off from ZooKeeper and from every other broker,
    /// both ways: its ZooKeeper proxy, the proxy in front of its
    /// replication listener, and its own connections to the other brokers'
    /// replication listeners. Clients can still reach it.
    pub fn isolate(&self, id: i32) {
        let pid = self.pid(id);
        let node = self.node(id);
        node.zk_proxy.cut();
        node.repl_proxy.cut();
        for other in self.nodes.iter().filter(|n| n.id != id) {
            other.repl_proxy.cut_from(pid);
        }
    }

    /// Undoes [`Cluster::isolate`] (every proxy lets everything through).
    pub fn heal(&self) {
        for n in &self.nodes {
            n.zk_proxy.heal();
            n.repl_proxy.heal();
        }
    }

    /// Metadata for `topic` from the brokers in `bootstrap`, or the
    /// client's error. Without a topic, it asks about [`PROBE_TOPIC`]
    /// (brokers and controller only): librdkafka's all-topics Metadata v12
    /// request is refused by the broker today ("3 unexpected trailing
    /// bytes"), which is not what these tests are about.
    pub fn metadata_from(&self, bootstrap: &str, topic: Option<&str>) -> Result<Meta, String> {
        let out = run_with_timeout(
            py_client(&self.python, "cluster_client.py")
                .args(["metadata", "--bootstrap", bootstrap])
                .args(["--topic", topic.unwrap_or(PROBE_TOPIC), "--timeout", "8"]),
            ADMIN_LIMIT,
        );
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Meta::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Metadata from the brokers that are up.
    pub fn metadata(&self, topic: Option<&str>) -> Result<Meta, String> {
        self.metadata_from(&self.bootstrap_of(&self.up()), topic)
    }

    /// Polls Metadata (from the brokers that are up) until `cond` holds;
    /// panics after `limit` with `what`, the last answer and the brokers'
    /// logs.
    pub fn wait_meta(
        &self,
        limit: Duration,
        what: &str,
        topic: Option<&str>,
        cond: impl Fn(&Meta) -> bool,
    ) -> Meta {
        self.wait_meta_from(&self.up(), limit, what, topic, cond)
    }

    /// Like [`Cluster::wait_meta`], asking only the brokers `ids`.
    pub fn wait_meta_from(
        &self,
        ids: &[i32],
        limit: Duration,
        what: &str,
        topic: Option<&str>,
        cond: impl Fn(&Meta) -> bool,
    ) -> Meta {
        let start = Instant::now();
        let bootstrap = self.bootstrap_of(ids);
        let mut last = Err(String::from("no answer yet"));
        while start.elapsed() < limit {
            last = self.metadata_from(&bootstrap, topic);
            if let Ok(m) = &last
                && cond(m)
            {
                return m.clone();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "{what}: not within {limit:?}; last Metadata: {last:?}\n{}",
            self.logs()
        );
    }

    /// Creates `topic` with `partitions` partitions, replication factor 3
    /// and min.insync.replicas 2, and waits until every partition has a
    /// leader and all three replicas in sync.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Meta {
        self.create_topic_rf(topic, partitions, 3, 2)
    }

    /// Creates a topic with the given replication factor and
    /// min.insync.replicas and waits until it is fully in sync.
    pub fn create_topic_rf(&self, topic: &str, partitions: u32, rf: u32, min_isr: u32) -> Meta {
        let out = run_with_timeout(
            py_client(&self.python, "cluster_client.py")
                .args(["create-topic", "--bootstrap", &self.bootstrap()])
                .args(["--topic", topic, "--partitions", &partitions.to_string()])
                .args(["--replication-factor", &rf.to_string()])
                .args(["--min-insync", &min_isr.to_string(), "--timeout", "20"]),
            ADMIN_LIMIT,
        );
        assert!(
            out.status.success(),
            "creating topic {topic} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        self.wait_in_sync(topic, partitions, Duration::from_secs(30))
    }

    /// Waits until `topic` has `partitions` partitions, each with a leader
    /// and every replica in sync.
    pub fn wait_in_sync(&self, topic: &str, partitions: u32, limit: Duration) -> Meta {
        self.wait_meta(
            limit,
            &format!("every partition of {topic} led, with all replicas in sync"),
            Some(topic),
            |m| {
                let t = m.topic(topic);
                t.len() == partitions as usize && t.values().all(|p| p.fully_in_sync())
            },
        )
    }

    /// The current leader of a partition (waits for one).
    pub fn leader(&self, topic: &str, partition: i32) -> i32 {
        let m = self.wait_meta(
            Duration::from_secs(30),
            &format!("a leader for {topic}-{partition}"),
            Some(topic),
            |m| m.part(topic, partition).is_some_and(|p| p.leader >= 0),
        );
        m.part(topic, partition).expect("checked").leader
    }

    /// A `gregor` command.
    pub fn gregor(&self) -> Command {
        Command::new(gregor_bin())
    }

    /// The last lines of every broker's log and of ZooKeeper's, for
    /// failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            s.push_str(&format!(
                "--- broker {} ({}) ---\n{}\n",
                n.id,
                if n.child.is_some() { "up" } else { "down" },
                n.log_tail()
            ));
        }
        s.push_str(&format!("--- zookeeper ---\n{}\n", self.zk.log_tail()));
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                kill_child(&mut c, &self.reaper);
            }
        }
        if std::thread::panicking() {
            eprintln!("cluster logs at the failure:\n{}", self.logs());
        }
    }
}

// ---------------------------------------------------------------------------
// Load: a producer and a consumer running through a fault
// ---------------------------------------------------------------------------

/// Records of a driver's output so far: complete record lines only (a
/// trailing partial line is still being written), and the `#` notes.
pub fn complete_lines(out: &[u8]) -> (Vec<Rec>, Vec<String>) {
    let text = String::from_utf8_lossy(out);
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut recs = Vec::new();
    let mut notes = Vec::new();
    for line in complete.lines() {
        if let Some(n) = line.strip_prefix("# ") {
            notes.push(n.to_string());
        } else if !line.is_empty() {
            recs.push(Rec::parse(line).unwrap_or_else(|e| panic!("bad driver line: {e}")));
        }
    }
    (recs, notes)
}

/// An idempotent acks=all producer and a from-the-beginning consumer on
/// one topic, both running until [`Load::finish`].
#[derive(Debug)]
pub struct Load {
    producer: Background,
    consumer: Background,
    producer_stop: PathBuf,
    consumer_stop: PathBuf,
}

/// What a [`Load`] acknowledged and consumed.
#[derive(Debug)]
pub struct LoadResult {
    /// Acknowledged records (timestamp: acknowledgement wall-clock ms).
    pub acked: Vec<Rec>,
    /// Consumed records, in arrival order.
    pub consumed: Vec<Rec>,
    /// The producer's notes (`error …`, `client-error …`, `sent …`).
    pub producer_notes: Vec<String>,
    /// The consumer's notes.
    pub consumer_notes: Vec<String>,
}

impl Load {
    /// Starts the producer (`rate` records per second, bootstrapping from
    /// every broker) and the consumer on `topic`.
    pub fn start(cluster: &Cluster, topic: &str, rate: u32) -> Load {
        let n = unique();
        let producer_stop = cluster.scratch(&format!("stop-producer-{n}"));
        let consumer_stop = cluster.scratch(&format!("stop-consumer-{n}"));
        let bootstrap = cluster.bootstrap();
        let producer = Background::spawn(
            py_client(&cluster.python, "cluster_client.py")
                .args(["produce", "--bootstrap", &bootstrap, "--topic", topic])
                .args(["--rate", &rate.to_string(), "--timeout", "90"])
                .arg("--stop-file")
                .arg(&producer_stop),
            cluster.dir.path(),
        );
        let consumer = Background::spawn(
            py_client(&cluster.python, "cluster_client.py")
                .args(["consume", "--bootstrap", &bootstrap, "--topic", topic])
                .args(["--timeout", "600", "--drain", "45"])
                .arg("--stop-file")
                .arg(&consumer_stop),
            cluster.dir.path(),
        );
        Load {
            producer,
            consumer,
            producer_stop,
            consumer_stop,
        }
    }

    /// The records acknowledged so far.
    pub fn acked(&self) -> Vec<Rec> {
        complete_lines(&self.producer.stdout_so_far()).0
    }

    /// Waits until at least `n` records are acknowledged; panics with
    /// `what` and the cluster's logs after `limit`.
    pub fn wait_acked(&self, cluster: &Cluster, n: usize, limit: Duration, what: &str) {
        let start = Instant::now();
        loop {
            let (recs, notes) = complete_lines(&self.producer.stdout_so_far());
            if recs.len() >= n {
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "{what}: {} records acknowledged, expected at least {n} within {limit:?}; \
                     producer notes (last 10): {:?}\n{}",
                    recs.len(),
                    &notes[notes.len().saturating_sub(10)..],
                    cluster.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `more` further records are acknowledged (producing
    /// goes on); returns the new total.
    pub fn wait_more(&self, cluster: &Cluster, more: usize, limit: Duration, what: &str) -> usize {
        let n = self.acked().len() + more;
        self.wait_acked(cluster, n, limit, what);
        n
    }

    /// Stops the producer (it flushes what is in flight), then lets the
    /// consumer read up to the last acknowledged offset of every partition
    /// and stops it.
    pub fn finish(self, cluster: &Cluster) -> LoadResult {
        fs::write(&self.producer_stop, "stop").expect("writing the producer stop file");
        let (status, out, err) = self.producer.wait(Duration::from_secs(150));
        assert!(
            status.success(),
            "the producer failed ({status}): {err}\n{}",
            cluster.logs()
        );
        let (acked, producer_notes) = complete_lines(&out);
        let mut targets: BTreeMap<i32, i64> = BTreeMap::new();
        for r in &acked {
            let t = targets.entry(r.partition).or_insert(0);
            *t = (*t).max(r.offset + 1);
        }
        let text: Vec<String> = targets.iter().map(|(p, o)| format!("{p}={o}")).collect();
        let tmp = self.consumer_stop.with_extension("tmp");
        fs::write(&tmp, text.join(",")).expect("writing the consumer targets");
        fs::rename(&tmp, &self.consumer_stop).expect("publishing the consumer targets");
        let (status, out, err) = self.consumer.wait(Duration::from_secs(120));
        assert!(
            status.success(),
            "the consumer failed ({status}): {err}\n{}",
            cluster.logs()
        );
        let (consumed, consumer_notes) = complete_lines(&out);
        LoadResult {
            acked,
            consumed,
            producer_notes,
            consumer_notes,
        }
    }
}

impl LoadResult {
    /// Runs [`check_acked_consumed`] and panics with its findings, the
    /// clients' notes and the cluster's logs when it fails; returns the
    /// summary otherwise.
    pub fn assert_ok(&self, cluster: &Cluster, fault: &str) -> Verdict {
        match check_acked_consumed(&self.acked, &self.consumed) {
            Ok(v) => {
                eprintln!("{fault}: {v}");
                v
            }
            Err(e) => panic!(
                "{fault}: acknowledged records were not all consumed as acknowledged:\n{e}\n\
                 producer notes (last 10): {:?}\nconsumer notes (last 10): {:?}\n{}",
                &self.producer_notes[self.producer_notes.len().saturating_sub(10)..],
                &self.consumer_notes[self.consumer_notes.len().saturating_sub(10)..],
                cluster.logs()
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------

/// What the checker saw when everything held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Records acknowledged.
    pub acked: usize,
    /// Records consumed (re-reads included).
    pub consumed: usize,
    /// Distinct offsets consumed.
    pub distinct: usize,
    /// Times the consumer went back to an offset it had already read
    /// (an offset reset), re-reading the same records.
    pub rewinds: usize,
    /// Records consumed that were never acknowledged (sent, written, but
    /// their acknowledgement did not reach the producer — allowed).
    pub unacked_consumed: usize,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} acknowledged, {} consumed ({} distinct offsets, {} rewinds, {} consumed but \
             never acknowledged)",
            self.acked, self.consumed, self.distinct, self.rewinds, self.unacked_consumed
        )
    }
}

fn describe(r: &Rec) -> String {
    let key = r
        .key
        .as_deref()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_else(|| "(null key)".into());
    format!("{key} (seq {})", seq_of(r).map_or(-1, |s| s as i64))
}

/// Checks the guarantees of acks=all under faults (spec: E2E-16):
///
/// - within each partition the consumer saw contiguous offsets from 0
///   (a gap means records vanished from the log); going back to an
///   already-read offset is allowed only if it re-reads the same record;
/// - every acknowledged (partition, offset) was consumed, holding the
///   acknowledged key, value and headers;
/// - no record was acknowledged twice, and acknowledged offsets follow
///   the send order within each partition.
///
/// Returns a description a user understands (which records were lost,
/// where the gap is) for the first kinds of failure found.
pub fn check_acked_consumed(acked: &[Rec], consumed: &[Rec]) -> Result<Verdict, String> {
    let mut problems: Vec<String> = Vec::new();
    // Acknowledgements: unique offsets, unique records, send order.
    let mut by_offset: BTreeMap<(i32, i64), &Rec> = BTreeMap::new();
    let mut by_seq: BTreeMap<u64, &Rec> = BTreeMap::new();
    for r in acked {
        if let Some(prev) = by_offset.insert((r.partition, r.offset), r)
            && prev.payload() != r.payload()
        {
            problems.push(format!(
                "partition {} offset {} was acknowledged for two records: {} and {}",
                r.partition,
                r.offset,
                describe(prev),
                describe(r)
            ));
        }
        if let Some(seq) = seq_of(r)
            && let Some(prev) = by_seq.insert(seq, r)
            && (prev.partition, prev.offset) != (r.partition, r.offset)
        {
            problems.push(format!(
                "{} was acknowledged twice: at partition {} offset {} and at partition {} \
                 offset {} (a duplicate)",
                describe(r),
                prev.partition,
                prev.offset,
                r.partition,
                r.offset
            ));
        }
    }
    if let Err(e) = check_send_order(acked) {
        problems.push(format!("acknowledged out of send order: {e}"));
    }
    // The consumed sequence of each partition.
    let mut seen: BTreeMap<(i32, i64), &Rec> = BTreeMap::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut rewinds = 0;
    for r in consumed {
        let want = next.entry(r.partition).or_insert(0);
        if r.offset > *want {
            problems.push(format!(
                "partition {}: the consumer read offset {} right after {}: offsets {}..={} are \
                 missing from the log",
                r.partition,
                r.offset,
                if *want == 0 {
                    "the start of the log".to_string()
                } else {
                    format!("offset {}", *want - 1)
                },
                *want,
                r.offset - 1
            ));
        } else if r.offset < *want {
            rewinds += 1;
        }
        if let Some(prev) = seen.get(&(r.partition, r.offset)) {
            if prev.payload() != r.payload() {
                problems.push(format!(
                    "partition {} offset {} changed between two reads: first {}, then {}",
                    r.partition,
                    r.offset,
                    describe(prev),
                    describe(r)
                ));
            }
        } else {
            seen.insert((r.partition, r.offset), r);
        }
        *want = r.offset + 1;
        if problems.len() > 20 {
            break;
        }
    }
    // Every acknowledged record, where it was acknowledged.
    let mut lost: Vec<String> = Vec::new();
    let mut lost_count = 0usize;
    for ((p, o), r) in &by_offset {
        match seen.get(&(*p, *o)) {
            None => {
                lost_count += 1;
                if lost.len() < 10 {
                    let end = next.get(p).map_or(-1, |n| n - 1);
                    lost.push(format!(
                        "  {} acknowledged at partition {p} offset {o} was never consumed \
                         (the consumer read partition {p} up to offset {end})",
                        describe(r)
                    ));
                }
            }
            Some(c) if c.payload() != r.payload() => {
                lost_count += 1;
                if lost.len() < 10 {
                    lost.push(format!(
                        "  {} acknowledged at partition {p} offset {o}, but that offset holds {}",
                        describe(r),
                        describe(c)
                    ));
                }
            }
            Some(_) => {}
        }
    }
    if lost_count > 0 {
        problems.push(format!(
            "{lost_count} of {} acknowledged records were lost:\n{}",
            by_offset.len(),
            lost.join("\n")
        ));
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let acked_keys: BTreeSet<(i32, i64)> = by_offset.keys().copied().collect();
    Ok(Verdict {
        acked: acked.len(),
        consumed: consumed.len(),
        distinct: seen.len(),
        rewinds,
        unacked_consumed: seen.keys().filter(|k| !acked_keys.contains(k)).count(),
    })
}

/// Parses the notes of a producer for delivery errors (`error KEY ERR`).
pub fn delivery_errors(notes: &[String]) -> Vec<&str> {
    notes
        .iter()
        .filter_map(|n| n.strip_prefix("error "))
        .collect()
}
