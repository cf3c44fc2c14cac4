//! A real ZooKeeper for the controller tests, shared by the tests of one
//! binary (each test works under its own chroot), and helpers that play
//! brokers by writing their znodes straight into ZooKeeper.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[path = "../../../tests/src/ports.rs"]
mod ports;

use gregor_core::ids::BrokerId;
use gregor_runtime::cluster::znodes::{self, BrokerZnode, PartitionStateZnode, TopicZnode};
use gregor_runtime::config::BrokerConfig;
use gregor_runtime::controller::{self, ControllerContext};
use zookeeper_client::{Acls, Client, CreateMode};

/// How long a test waits for the controller to act.
pub const WAIT: Duration = Duration::from_secs(15);

/// The session timeout of every test session.
const SESSION_TIMEOUT: Duration = Duration::from_millis(4000);

struct Server {
    port: u16,
}

/// The loopback port of the shared ZooKeeper, started on first use. The
/// server runs from a thread that lives as long as the test process and
/// dies with it (`PR_SET_PDEATHSIG`); its data is in a temporary directory.
fn server() -> u16 {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let port = ports::free_port();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                let cp: Vec<String> = std::fs::read_dir("/usr/share/java")
                    .unwrap()
                    .filter_map(|e| {
                        let p = e.ok()?.path();
                        (p.extension()? == "jar").then(|| p.display().to_string())
                    })
                    .collect();
                let mut cmd = Command::new("java");
                cmd.arg("-Xmx128m")
                    .arg("-Dzookeeper.admin.enableServer=false")
                    .arg("-cp")
                    .arg(cp.join(":"))
                    .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
                    .arg(port.to_string())
                    .arg(dir.path())
                    // tickTime 250 ms: sessions from 0.5 s to 5 s.
                    .arg("250")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                // SAFETY: prctl is async-signal-safe; it only sets a flag of
                // the child.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let mut child = cmd.spawn().expect("java (ZooKeeper) must be installed");
                tx.send(()).unwrap();
                // This thread must outlive every test: the child dies with it.
                let _ = child.wait();
                drop(dir);
            });
            rx.recv().unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "ZooKeeper did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
            Server { port }
        })
        .port
}

/// A test's own corner of the shared ZooKeeper.
pub struct Zk {
    /// `127.0.0.1:PORT/chroot`.
    pub connect: String,
    /// A session for the test's own reads and writes.
    pub admin: Client,
}

impl Zk {
    /// A fresh chroot named after the test.
    pub async fn new(name: &str) -> Zk {
        let port = server();
        let root = Client::connect(&format!("127.0.0.1:{port}")).await.unwrap();
        root.create(
            &format!("/{name}"),
            &[],
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
        let connect = format!("127.0.0.1:{port}/{name}");
        let admin = Client::connect(&connect).await.unwrap();
        for p in znodes::PERSISTENT_PATHS {
            admin
                .create(
                    p,
                    &[],
                    &CreateMode::Persistent.with_acls(Acls::anyone_all()),
                )
                .await
                .unwrap();
        }
        Zk { connect, admin }
    }

    /// A new session (short timeout, so that a lost one ends fast, but
    /// long enough to survive a loaded machine).
    pub async fn session(&self) -> Client {
        Client::connector()
            .with_session_timeout(SESSION_TIMEOUT)
            .connect(&self.connect)
            .await
            .unwrap()
    }

    /// Registers broker `id` from its own session; dropping the returned
    /// client closes the session and the registration goes.
    pub async fn register(&self, id: i32, unclean_start: bool) -> Client {
        let c = self.session().await;
        let b = BrokerZnode {
            version: 5,
            host: "127.0.0.1".into(),
            port: 9000 + id,
            jmx_port: -1,
            timestamp: "0".into(),
            endpoints: vec![format!("PLAINTEXT://127.0.0.1:{}", 9000 + id)],
            listener_security_protocol_map: BTreeMap::new(),
            rack: None,
            unclean_start,
        };
        c.create(
            &znodes::broker_path(BrokerId(id)),
            &znodes::encode(&b),
            &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
        c
    }

    /// Writes `/brokers/topics/<t>` (and `/config/topics/<t>`) as a broker
    /// does on CreateTopics.
    pub async fn create_topic(&self, topic: &str, assignment: &[&[i32]]) {
        let t = TopicZnode {
            version: 3,
            partitions: assignment
                .iter()
                .enumerate()
                .map(|(p, r)| (p.to_string(), r.to_vec()))
                .collect(),
            adding_replicas: BTreeMap::new(),
            removing_replicas: BTreeMap::new(),
            topic_id: None,
        };
        let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
        self.admin
            .create(
                &znodes::topic_config_path(topic),
                br#"{"version":1,"config":{}}"#,
                &opts,
            )
            .await
            .unwrap();
        self.admin
            .create(&znodes::topic_path(topic), &znodes::encode(&t), &opts)
            .await
            .unwrap();
    }

    /// The state znode of a partition and its version, if it exists.
    pub async fn state(&self, topic: &str, p: i32) -> Option<(PartitionStateZnode, i32)> {
        let path = znodes::partition_state_path(topic, p);
        match self.admin.get_data(&path).await {
            Ok((d, stat)) => Some((znodes::decode(&path, &d).unwrap(), stat.version)),
            Err(zookeeper_client::Error::NoNode) => None,
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// The topic znode.
    pub async fn topic(&self, topic: &str) -> Option<TopicZnode> {
        let path = znodes::topic_path(topic);
        match self.admin.get_data(&path).await {
            Ok((d, _)) => Some(znodes::decode(&path, &d).unwrap()),
            Err(zookeeper_client::Error::NoNode) => None,
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// Whether `path` exists.
    pub async fn exists(&self, path: &str) -> bool {
        self.admin.check_stat(path).await.unwrap().is_some()
    }

    /// The broker id in `/controller`, if any.
    pub async fn controller(&self) -> Option<i32> {
        match self.admin.get_data(znodes::CONTROLLER).await {
            Ok((d, _)) => {
                let c: znodes::ControllerZnode = znodes::decode(znodes::CONTROLLER, &d).unwrap();
                Some(c.brokerid)
            }
            Err(_) => None,
        }
    }

    /// The controller epoch.
    pub async fn controller_epoch(&self) -> Option<i32> {
        let (d, _) = self.admin.get_data(znodes::CONTROLLER_EPOCH).await.ok()?;
        std::str::from_utf8(&d).ok()?.trim().parse().ok()
    }

    /// Starts a controller for `broker` in a session of its own, with the
    /// broker settings `pairs`.
    pub async fn start_controller(&self, broker: i32, pairs: &[(&str, &str)]) -> RunningController {
        let client = self.session().await;
        Self::spawn_controller(client, broker, pairs)
    }

    /// Starts a controller whose session goes through `proxy`.
    pub async fn start_controller_via(
        &self,
        proxy: &Proxy,
        broker: i32,
        pairs: &[(&str, &str)],
    ) -> RunningController {
        let chroot = self.connect.split_once('/').map_or("", |c| c.1);
        let client = Client::connector()
            .with_session_timeout(SESSION_TIMEOUT)
            .connect(&format!("127.0.0.1:{}/{chroot}", proxy.port))
            .await
            .unwrap();
        Self::spawn_controller(client, broker, pairs)
    }

    fn spawn_controller(client: Client, broker: i32, pairs: &[(&str, &str)]) -> RunningController {
        let config = Arc::new(BrokerConfig::from_pairs(pairs.iter().copied()).unwrap());
        let (stop, rx) = tokio::sync::watch::channel(false);
        let ctx = ControllerContext::new(config, BrokerId(broker), rx);
        let task = tokio::spawn(controller::run(client, ctx));
        RunningController { stop, task }
    }

    /// A TCP proxy in front of the shared ZooKeeper.
    pub async fn proxy(&self) -> Proxy {
        let upstream = server();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", ports::free_port()))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            upstream,
            tasks: Arc::new(std::sync::Mutex::new(Vec::new())),
        };
        p.serve(listener);
        p
    }
}

/// Forwards connections to ZooKeeper until cut: a way to isolate one
/// session from ZooKeeper as a network partition would.
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    upstream: u16,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    fn serve(&self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream;
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut up) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Accepts connections again on the same port.
    pub async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }
}

/// A controller task.
pub struct RunningController {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningController {
    /// Waits for `run` to return by itself.
    pub async fn ended(self) {
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("run returns when its session ends")
            .unwrap();
    }

    /// Fires `stop` and waits for `run` to return.
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("run returns after stop")
            .unwrap();
    }
}

/// Polls `f` until it yields `Some`, failing the test after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
