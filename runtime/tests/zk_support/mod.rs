//! A real ZooKeeper for tests (Debian's `zookeeper` package, run with
//! `ZooKeeperServerMain` on a free loopback port), in-process brokers in
//! ZooKeeper mode, and a minimal stand-in for the controller that writes
//! initial partition states so the broker side can be tested alone.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gregor_runtime::broker::Broker;
use gregor_runtime::config::BrokerConfig;
use gregor_runtime::server::{Server, ShutdownHandle};
use zookeeper_client::{Acls, Client, CreateMode};

/// ZooKeeper's tick in ms: sessions may be as short as two ticks, so
/// expiry tests stay fast.
pub const TICK_MS: u32 = 200;

#[path = "../../../tests/src/ports.rs"]
mod ports;
pub use ports::free_port;

/// A ZooKeeper server process, killed on drop.
pub struct ZkServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ZkServer {
    /// Starts a standalone server and waits until it serves sessions.
    pub async fn start() -> Self {
        let mut s = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        s.launch().await;
        s
    }

    fn classpath() -> String {
        let mut jars: Vec<PathBuf> = std::fs::read_dir("/usr/share/java")
            .expect("/usr/share/java (install Debian's zookeeper package)")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jar"))
            .collect();
        jars.sort();
        jars.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    async fn launch(&mut self) {
        // Short ticks for fast expiry tests, but sessions up to a minute
        // (the default maximum is 20 ticks).
        let cfg = self.dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime={TICK_MS}\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
                 minSessionTimeout={}\nmaxSessionTimeout=60000\nadmin.enableServer=false\n",
                self.dir.path().join("data").display(),
                self.port,
                2 * TICK_MS,
            ),
        )
        .unwrap();
        let child = Command::new("java")
            .args([
                "-Xmx128m",
                "-cp",
                &Self::classpath(),
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                &cfg.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("java runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Ok(c)) = tokio::time::timeout(
                Duration::from_secs(2),
                Client::connector()
                    .with_session_timeout(Duration::from_secs(2))
                    .with_fail_eagerly()
                    .connect(&self.connect()),
            )
            .await
            {
                drop(c);
                return;
            }
            assert!(Instant::now() < deadline, "ZooKeeper did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn connect(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (its data stays).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// A client rooted at `chroot` (e.g. `/t1`), or the root for "".
    pub async fn client(&self, chroot: &str) -> Client {
        Client::connector()
            .with_session_timeout(Duration::from_secs(5))
            .connect(&format!("{}{chroot}", self.connect()))
            .await
            .unwrap()
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The config of ZooKeeper-mode broker `id` on `dir`, with `extra` keys.
fn broker_config(
    id: i32,
    zk_connect: &str,
    extra: &[(&str, &str)],
    dir: &tempfile::TempDir,
) -> BrokerConfig {
    let mut pairs = vec![
        ("broker.id".to_owned(), id.to_string()),
        ("listeners".to_owned(), "PLAINTEXT://127.0.0.1:0".to_owned()),
        ("log.dirs".to_owned(), dir.path().display().to_string()),
        ("zookeeper.connect".to_owned(), zk_connect.to_owned()),
        ("zookeeper.session.timeout.ms".to_owned(), "2000".to_owned()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    BrokerConfig::from_pairs(pairs).unwrap()
}

/// A ZooKeeper-mode broker running inside the test process.
pub struct ZkBroker {
    pub id: i32,
    pub broker: Arc<Broker>,
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    handle: ShutdownHandle,
    task: tokio::task::JoinHandle<()>,
}

impl ZkBroker {
    /// Starts broker `id` against `zk_connect` (servers and chroot).
    pub async fn start(id: i32, zk_connect: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_with(id, zk_connect, extra, None).await
    }

    /// Starts broker `id` with `controller` run for every session.
    pub async fn start_with(
        id: i32,
        zk_connect: &str,
        extra: &[(&str, &str)],
        controller: Option<gregor_runtime::cluster::zk::ControllerTask>,
    ) -> Self {
        Self::start_full(
            id,
            zk_connect,
            extra,
            controller,
            tempfile::tempdir().unwrap(),
        )
        .await
    }

    /// Starts broker `id` on the log directory `dir` (kept from an earlier
    /// run of the same broker).
    pub async fn start_in(
        id: i32,
        zk_connect: &str,
        extra: &[(&str, &str)],
        dir: tempfile::TempDir,
    ) -> Self {
        Self::start_full(id, zk_connect, extra, None, dir).await
    }

    /// Like [`ZkBroker::start_in`], but a start-up failure is returned
    /// (with the directory) instead of failing the test.
    pub async fn try_start_in(
        id: i32,
        zk_connect: &str,
        dir: tempfile::TempDir,
    ) -> Result<Self, (String, tempfile::TempDir)> {
        Self::try_start_full(id, zk_connect, &[], None, dir).await
    }

    async fn start_full(
        id: i32,
        zk_connect: &str,
        extra: &[(&str, &str)],
        controller: Option<gregor_runtime::cluster::zk::ControllerTask>,
        dir: tempfile::TempDir,
    ) -> Self {
        match Self::try_start_full(id, zk_connect, extra, controller, dir).await {
            Ok(b) => b,
            Err((e, _)) => panic!("broker {id} did not start: {e}"),
        }
    }

    async fn try_start_full(
        id: i32,
        zk_connect: &str,
        extra: &[(&str, &str)],
        controller: Option<gregor_runtime::cluster::zk::ControllerTask>,
        dir: tempfile::TempDir,
    ) -> Result<Self, (String, tempfile::TempDir)> {
        let config = broker_config(id, zk_connect, extra, &dir);
        let broker = match Broker::open(config) {
            Ok(b) => Arc::new(b),
            Err(e) => return Err((e.to_string(), dir)),
        };
        if let Some(task) = controller {
            broker.metadata.zk().unwrap().set_controller(task);
        }
        match Server::bind(broker.clone()).await {
            Ok(server) => {
                let (addr, handle, task) = server.spawn();
                Ok(Self {
                    id,
                    broker,
                    addr,
                    dir,
                    handle,
                    task,
                })
            }
            Err(e) => {
                broker.shutdown();
                drop(broker);
                Err((e.to_string(), dir))
            }
        }
    }

    /// The ZooKeeper-mode backend.
    pub fn zk(&self) -> &Arc<gregor_runtime::cluster::zk::ZkCluster> {
        self.broker.metadata.zk().expect("ZooKeeper mode")
    }

    /// Graceful stop.
    pub async fn stop(self) {
        self.stop_keeping_dir().await;
    }

    /// Graceful stop; hands back the log directory for a later start.
    pub async fn stop_keeping_dir(self) -> tempfile::TempDir {
        self.handle.shutdown();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("broker stops")
            .unwrap();
        drop(self.broker);
        self.dir
    }
}

/// Waits until `cond` holds, polling; fails the test after `secs`.
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stands in for the controller: every partition of every topic without a
/// state znode gets one (first replica leads, every replica in the ISR,
/// controller epoch 1). Runs until the returned task is aborted.
pub fn spawn_state_writer(client: Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
        loop {
            for t in client
                .list_children("/admin/delete_topics")
                .await
                .unwrap_or_default()
            {
                delete_tree(&client, &format!("/brokers/topics/{t}")).await;
                delete_tree(&client, &format!("/config/topics/{t}")).await;
                let _ = client
                    .delete(&format!("/admin/delete_topics/{t}"), None)
                    .await;
            }
            let topics = client
                .list_children("/brokers/topics")
                .await
                .unwrap_or_default();
            for t in topics {
                let Ok((data, _)) = client.get_data(&format!("/brokers/topics/{t}")).await else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
                for (p, replicas) in v["partitions"].as_object().unwrap() {
                    let path = format!("/brokers/topics/{t}/partitions/{p}/state");
                    if matches!(client.check_stat(&path).await, Ok(Some(_))) {
                        continue;
                    }
                    let _ = client
                        .mkdir(&format!("/brokers/topics/{t}/partitions/{p}"), &opts)
                        .await;
                    let leader = replicas[0].as_i64().unwrap();
                    let state = serde_json::json!({
                        "controller_epoch": 1, "leader": leader, "version": 1,
                        "leader_epoch": 0, "isr": replicas,
                    });
                    let _ = client
                        .create(&path, state.to_string().as_bytes(), &opts)
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Deletes `path` and everything below it.
pub async fn delete_tree(client: &Client, path: &str) {
    let mut stack = vec![path.to_owned()];
    let mut order = Vec::new();
    while let Some(p) = stack.pop() {
        for c in client.list_children(&p).await.unwrap_or_default() {
            stack.push(format!("{p}/{c}"));
        }
        order.push(p);
    }
    for p in order.iter().rev() {
        let _ = client.delete(p, None).await;
    }
}
