//! The cluster harness itself, checked without a cluster: ZooKeeper starts,
//! keeps its data across a kill -9 and a restart on the same port; the
//! proxy forwards, cuts (all, or one process's connections) and heals; the
//! fault-test producer, consumer, Metadata and coordinator clients work
//! against a single-node broker; and the checker catches every kind of
//! loss it claims to (spec: E2E-16, E2E-17).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::cluster::*;
use tests::*;

/// An echo server on a free loopback port (one thread per connection).
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding the echo server");
    let addr = l.local_addr().expect("echo address");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `msg` and reads the echo; `None` when the connection is closed.
fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(msg).ok()?;
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connecting to the proxy")
}

// spec: E2E-17
#[test]
fn proxy_forwards_cuts_and_heals() {
    let proxy = Proxy::start(echo_server());
    let mut a = connect(proxy.addr());
    assert_eq!(roundtrip(&mut a, b"hello").as_deref(), Some(&b"hello"[..]));
    assert_eq!(proxy.open_connections(), 1);

    proxy.cut();
    assert_eq!(
        roundtrip(&mut a, b"after cut"),
        None,
        "an open connection must be closed by a cut"
    );
    let mut b = connect(proxy.addr());
    assert_eq!(
        roundtrip(&mut b, b"new"),
        None,
        "a new connection must be refused while cut"
    );

    proxy.heal();
    let mut c = connect(proxy.addr());
    assert_eq!(
        roundtrip(&mut c, b"healed").as_deref(),
        Some(&b"healed"[..])
    );
    let (accepted, refused) = proxy.counts();
    assert_eq!((accepted, refused), (2, 1));
}

/// A child process that connects through the proxy and echoes "ping"
/// every 100 ms, printing `ok` once, then `closed` when the connection
/// dies, then (reconnecting every 100 ms) `refused` for a connection
/// closed at once, and `back` once a connection works again.
const PINGER: &str = r#"
import socket, sys, time
port = int(sys.argv[1])
def ping(s):
    try:
        s.settimeout(2)
        s.sendall(b"ping")
        return s.recv(4) == b"ping"
    except OSError:
        return False
s = socket.create_connection(("127.0.0.1", port))
assert ping(s)
print("ok", flush=True)
while ping(s):
    time.sleep(0.1)
print("closed", flush=True)
said_refused = False
while True:
    time.sleep(0.1)
    try:
        s = socket.create_connection(("127.0.0.1", port))
    except OSError:
        continue
    if ping(s):
        print("back", flush=True)
        break
    if not said_refused:
        print("refused", flush=True)
        said_refused = True
"#;

// spec: E2E-17
#[test]
fn proxy_cuts_one_process_and_spares_the_others() {
    let proxy = Proxy::start(echo_server());
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("pinger.out");
    let mut child = Command::new("python3")
        .args(["-c", PINGER, &proxy.port().to_string()])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("pinger output"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning python3");
    let said = |what: &str| {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .any(|l| l == what)
    };
    wait_until(Duration::from_secs(10), "the pinger connected", || {
        said("ok")
    });
    let mut mine = connect(proxy.addr());
    assert!(roundtrip(&mut mine, b"x").is_some());

    proxy.cut_from(child.id());
    wait_until(
        Duration::from_secs(10),
        "the pinger's connection closed",
        || said("closed"),
    );
    wait_until(
        Duration::from_secs(10),
        "the pinger's reconnect refused",
        || said("refused"),
    );
    assert_eq!(
        roundtrip(&mut mine, b"still here").as_deref(),
        Some(&b"still here"[..]),
        "another process's connection must survive a cut of the pinger"
    );
    let mut fresh = connect(proxy.addr());
    assert!(
        roundtrip(&mut fresh, b"new").is_some(),
        "new connections of other processes must pass"
    );

    proxy.heal();
    wait_until(Duration::from_secs(10), "the pinger reconnected", || {
        said("back")
    });
    let status = child.wait().expect("reaping the pinger");
    assert!(status.success(), "pinger failed: {status}");
}

// spec: E2E-17
#[test]
fn zookeeper_restarts_on_its_port_with_its_data() {
    let Some(mut zk) = ZooKeeper::start() else {
        return;
    };
    assert!(zk.srvr().is_some_and(|s| s.contains("Mode: standalone")));
    let out = zk.cli(&["create", "/gregor-probe", "kept"]);
    assert!(
        out.status.success(),
        "zkCli create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = zk.port();
    let old = zk.pid();
    zk.kill9();
    assert!(!accepts(zk.addr()), "ZooKeeper still accepts after kill -9");
    let t = Instant::now();
    zk.restart();
    eprintln!("ZooKeeper restarted in {:?}", t.elapsed());
    assert_eq!(zk.port(), port);
    assert_ne!(zk.pid(), old);
    assert_eq!(zk.get("/gregor-probe").as_deref(), Some("kept"));
    assert_eq!(zk.get("/gregor-missing"), None);
    let pid = zk.pid();
    drop(zk);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "ZooKeeper (pid {pid}) outlived its handle"
    );
}

fn rec(partition: i32, offset: i64, seq: usize) -> Rec {
    let mut r = Rec::keyed(seq);
    r.partition = partition;
    r.offset = offset;
    r
}

// spec: E2E-16
#[test]
fn checker_accepts_a_clean_run_and_rewinds_that_reread_the_same_records() {
    let acked: Vec<Rec> = (0..6)
        .map(|i| rec((i % 2) as i32, (i / 2) as i64, i))
        .collect();
    let mut consumed = acked.clone();
    // Not acknowledged (its ack was lost) but written: allowed.
    consumed.push(rec(0, 3, 6));
    // The consumer reset to the start of partition 1 and read it again.
    consumed.extend(acked.iter().filter(|r| r.partition == 1).cloned());
    let v = check_acked_consumed(&acked, &consumed).expect("a clean run");
    assert_eq!(v.acked, 6);
    assert_eq!(v.distinct, 7);
    assert_eq!(v.rewinds, 1);
    assert_eq!(v.unacked_consumed, 1);
}

// spec: E2E-16
#[test]
fn checker_names_lost_skipped_changed_and_duplicated_records() {
    let acked: Vec<Rec> = (0..6).map(|i| rec(0, i as i64, i)).collect();

    // Lost: the last two acknowledged records never arrive.
    let e = check_acked_consumed(&acked, &acked[..4]).unwrap_err();
    assert!(e.contains("2 of 6 acknowledged records were lost"), "{e}");
    assert!(
        e.contains("key-000004 (seq 4) acknowledged at partition 0 offset 4 was never consumed"),
        "{e}"
    );

    // A gap: offsets 2 and 3 skipped.
    let gap: Vec<Rec> = [0, 1, 4, 5].iter().map(|&i| acked[i].clone()).collect();
    let e = check_acked_consumed(&acked, &gap).unwrap_err();
    assert!(e.contains("offsets 2..=3 are missing"), "{e}");

    // The log starts late.
    let e = check_acked_consumed(&acked[1..], &acked[1..]).unwrap_err();
    assert!(e.contains("after the start of the log"), "{e}");

    // Another record at an acknowledged offset (a truncated, rewritten log).
    let mut changed = acked.clone();
    changed[3] = rec(0, 3, 99);
    let e = check_acked_consumed(&acked, &changed).unwrap_err();
    assert!(
        e.contains("acknowledged at partition 0 offset 3, but that offset holds key-000099"),
        "{e}"
    );

    // A record re-read with different contents.
    let mut reread = acked.clone();
    reread.push(rec(0, 5, 77));
    let e = check_acked_consumed(&acked, &reread).unwrap_err();
    assert!(e.contains("offset 5 changed between two reads"), "{e}");

    // The same record acknowledged at two offsets (a duplicate).
    let mut dup = acked.clone();
    dup.push(rec(0, 6, 2));
    let mut dup_consumed = acked.clone();
    dup_consumed.push(rec(0, 6, 2));
    let e = check_acked_consumed(&dup, &dup_consumed).unwrap_err();
    assert!(e.contains("(seq 2) was acknowledged twice"), "{e}");
}

/// The fault-test clients against a single-node broker: the producer runs
/// until stopped and logs each acknowledgement, the consumer reads up to
/// the targets it is given, the checker passes; Metadata and
/// FindCoordinator answer.
// spec: E2E-17
#[test]
fn fault_clients_and_checker_work_against_one_broker() {
    let Some(py) = python() else { return };
    let broker = Broker::start(&["num.partitions=3"]);
    let topic = "harness";
    let out = run_ok(
        py_client(&py, "cluster_client.py")
            .args(["create-topic", "--bootstrap", &broker.bootstrap()])
            .args(["--topic", topic, "--partitions", "3"])
            .args(["--replication-factor", "1", "--min-insync", "1"]),
        CLIENT_LIMIT,
        &broker,
    );
    assert!(out.status.success());

    let meta = run_ok(
        py_client(&py, "cluster_client.py")
            .args(["metadata", "--bootstrap", &broker.bootstrap()])
            .args(["--topic", topic]),
        CLIENT_LIMIT,
        &broker,
    );
    let m = Meta::parse(&String::from_utf8_lossy(&meta.stdout));
    assert_eq!(m.controller, 0, "{m:?}");
    assert_eq!(m.brokers.iter().copied().collect::<Vec<_>>(), vec![0]);
    assert_eq!(m.topic(topic).len(), 3, "{m:?}");
    for p in m.topic(topic).values() {
        assert_eq!((p.leader, &p.replicas, &p.isr), (0, &vec![0], &vec![0]));
        assert!(p.fully_in_sync());
    }

    let stop_p = broker.scratch("stop-producer");
    let stop_c = broker.scratch("stop-consumer");
    let producer = Background::spawn(
        py_client(&py, "cluster_client.py")
            .args([
                "produce",
                "--bootstrap",
                &broker.bootstrap(),
                "--topic",
                topic,
            ])
            .args(["--rate", "500"])
            .arg("--stop-file")
            .arg(&stop_p),
        &broker.scratch(""),
    );
    let consumer = Background::spawn(
        py_client(&py, "cluster_client.py")
            .args([
                "consume",
                "--bootstrap",
                &broker.bootstrap(),
                "--topic",
                topic,
            ])
            .args(["--drain", "20"])
            .arg("--stop-file")
            .arg(&stop_c),
        &broker.scratch(""),
    );
    wait_until(Duration::from_secs(30), "300 acknowledgements", || {
        complete_lines(&producer.stdout_so_far()).0.len() >= 300
    });
    std::fs::write(&stop_p, "stop").unwrap();
    let (status, out, err) = producer.wait(Duration::from_secs(60));
    assert!(status.success(), "producer: {err}");
    let (acked, notes) = complete_lines(&out);
    assert!(acked.len() >= 300);
    assert!(delivery_errors(&notes).is_empty(), "{notes:?}");
    let mut targets = std::collections::BTreeMap::new();
    for r in &acked {
        let t = targets.entry(r.partition).or_insert(0i64);
        *t = (*t).max(r.offset + 1);
    }
    assert_eq!(targets.len(), 3, "keys spread over all partitions");
    let text: Vec<String> = targets.iter().map(|(p, o)| format!("{p}={o}")).collect();
    std::fs::write(&stop_c, text.join(",")).unwrap();
    let t = Instant::now();
    let (status, out, err) = consumer.wait(Duration::from_secs(60));
    assert!(status.success(), "consumer: {err}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "the consumer must stop at its targets, not at --drain"
    );
    let (consumed, _) = complete_lines(&out);
    let v = check_acked_consumed(&acked, &consumed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.acked, acked.len());
    assert_eq!(v.distinct, acked.len());

    // FindCoordinator (through DescribeGroups) names the only broker.
    let group = "harness-group";
    let _ = run_ok(
        &mut py_group_consume(
            &py,
            "confluent.py",
            &broker,
            group,
            topic,
            &["--count", "10", "--timeout", "60"],
        ),
        CLIENT_LIMIT,
        &broker,
    );
    let out = run_ok(
        py_client(&py, "cluster_client.py")
            .args(["coordinator", "--bootstrap", &broker.bootstrap()])
            .args(["--group", group]),
        CLIENT_LIMIT,
        &broker,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "coordinator 0");
}
