//! The TCP server: one tokio task per connection, pipelined requests
//! answered in order, bounded in-flight work, and graceful shutdown.
//!
//! Each connection has a reader and a processor. The reader cuts frames with
//! [`frame::check`] and queues them; the processor handles them one at a
//! time, in arrival order, and writes each response before taking the next
//! (spec: PRO-6). Like Kafka, one connection's requests are *applied* in
//! order — two pipelined Produce requests can never overtake each other —
//! while the client may keep many in flight. The queue is bounded: when a
//! client has [`MAX_IN_FLIGHT_PER_CONNECTION`] requests outstanding the
//! reader stops reading (back-pressure).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::protocol::{self, Outcome, frame};

/// Requests one connection may have outstanding; Kafka's clients pipeline at
/// most five produce requests, so this leaves room for fetches and metadata
/// without letting one client queue unbounded work.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;

/// How long shutdown waits for in-flight requests before closing anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Initial read buffer per connection; grows only for large frames.
const READ_BUFFER_BYTES: usize = 8 * 1024;

tokio::task_local! {
    /// The name of the listener the current connection arrived on.
    static LISTENER: Arc<str>;
}

/// The listener the request being handled arrived on (spec: CLU-31);
/// `None` outside a connection task (e.g. in tests calling handlers).
pub fn current_listener() -> Option<Arc<str>> {
    LISTENER.try_with(Clone::clone).ok()
}

/// Every configured listener, bound, ready to serve.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<(Arc<str>, TcpListener)>,
    broker: Arc<Broker>,
    addr: SocketAddr,
}

/// Tells a running server to stop; dropping it also stops the server.
#[derive(Debug)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Starts a graceful shutdown.
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

impl Server {
    /// Binds every configured listener (spec: CLU-31); in ZooKeeper mode
    /// then registers the broker with the bound ports (spec: CLU-4).
    pub async fn bind(broker: Arc<Broker>) -> std::io::Result<Self> {
        let mut listeners = Vec::with_capacity(broker.config.listeners.len());
        for listener_cfg in &broker.config.listeners {
            let addr = listener_cfg
                .bind_addr()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("listener {} on {addr}: {e}", listener_cfg.name),
                )
            })?;
            let addr = listener.local_addr()?;
            broker.bound_port_of(&listener_cfg.name, addr.port());
            tracing::info!(%addr, listener = %listener_cfg.name, "listening");
            listeners.push((Arc::<str>::from(listener_cfg.name.as_str()), listener));
        }
        let addr = listeners[0].1.local_addr()?;
        broker
            .start_cluster()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self {
            listeners,
            broker,
            addr,
        })
    }

    /// The address the first listener bound (a configured port 0 is
    /// resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every listener's name and bound address, in configuration order.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(n, l)| Some((n.to_string(), l.local_addr().ok()?)))
            .collect()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets every
    /// connection finish the requests it has already read, flushes the
    /// broker and returns (spec: PRO-30).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let (tx, rx) = watch::channel(false);
        let serve = self.serve(rx);
        tokio::pin!(serve);
        tokio::select! {
            () = &mut serve => return,
            () = shutdown => {}
        }
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = tx.send(true);
        serve.await;
    }

    /// Runs the server in a background task; returns its address and a handle.
    pub fn spawn(self) -> (SocketAddr, ShutdownHandle, tokio::task::JoinHandle<()>) {
        let addr = self.addr;
        let (tx, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            self.run(async move {
                stopped(&mut rx).await;
            })
            .await
        });
        (addr, ShutdownHandle(tx), task)
    }

    async fn serve(self, stop: watch::Receiver<bool>) {
        let mut stopping = stop.clone();
        let max_connections = usize::try_from(self.broker.config.max_connections).unwrap_or(0);
        let permits = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
        let mut connections = JoinSet::new();
        let maintenance = tokio::spawn(self.broker.clone().maintenance(stop.clone()));
        let group_timers =
            tokio::spawn(crate::group::run_timers(self.broker.clone(), stop.clone()));
        let (accepted_tx, mut accepted) = mpsc::channel::<(TcpStream, SocketAddr, Arc<str>)>(16);
        let mut acceptors = JoinSet::new();
        for (name, listener) in self.listeners {
            let tx = accepted_tx.clone();
            let mut stop = stop.clone();
            acceptors.spawn(async move {
                loop {
                    tokio::select! {
                        res = listener.accept() => match res {
                            Ok((stream, peer)) => {
                                if tx.send((stream, peer, name.clone())).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, listener = %name, "accept failed");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        },
                        () = stopped(&mut stop) => return,
                    }
                }
            });
        }
        drop(accepted_tx);
        loop {
            tokio::select! {
                Some((stream, peer, listener)) = accepted.recv() => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "max.connections reached; closing new connection");
                        continue;
                    };
                    let broker = self.broker.clone();
                    let stop = stop.clone();
                    connections.spawn(LISTENER.scope(listener, async move {
                        connection(stream, peer, broker, stop).await;
                        drop(permit);
                    }));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                () = stopped(&mut stopping) => break,
            }
        }
        // spec: CLU-85 — leaderships move away while this broker still
        // serves, so clients and followers switch without a failure.
        self.broker.controlled_shutdown().await;
        acceptors.shutdown().await;
        drop(accepted);
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!("connections still busy after the grace period; closing them");
            connections.shutdown().await;
        }
        let _ = maintenance.await;
        let _ = group_timers.await;
        self.broker.stop_cluster().await;
        let broker = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || broker.shutdown()).await;
        tracing::info!("shutdown complete");
    }
}

/// Writes a response made of parts: memory with `write_all`, file ranges
/// with `sendfile(2)` straight from the page cache (spec: PRO-77).
async fn write_parts(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    parts: Vec<protocol::Part>,
) -> std::io::Result<()> {
    for part in parts {
        match part {
            protocol::Part::Bytes(b) => wr.write_all(&b).await?,
            protocol::Part::File(range) => send_file(wr.as_ref(), &range).await?,
        }
    }
    Ok(())
}

/// Sends a file range on a non-blocking socket with `sendfile(2)`.
async fn send_file(
    sock: &TcpStream,
    range: &crate::storage::segment::FileRange,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut offset = libc::off_t::try_from(range.position)
        .map_err(|_| std::io::Error::other("file offset out of range"))?;
    let mut left = usize::try_from(range.len).unwrap_or(usize::MAX);
    while left > 0 {
        sock.writable().await?;
        let sent = sock.try_io(tokio::io::Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the
            // call (the socket is borrowed, the file is kept alive by the
            // range's Arc), and `offset` is a valid, exclusively borrowed
            // off_t that the kernel advances.
            let n = unsafe {
                libc::sendfile(sock.as_raw_fd(), range.file.as_raw_fd(), &mut offset, left)
            };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            // The file ended early (truncated under us): the frame cannot
            // be completed, so the connection must close.
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file shorter than the range being sent",
                ));
            }
            Ok(n) => left -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sleeps for `idle`, or forever when idle connections are kept.
async fn idle_timeout(idle: Option<Duration>) {
    match idle {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves one connection until the client closes it, sends a malformed
/// frame, or the server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (queue_tx, queue_rx) = mpsc::channel::<Bytes>(MAX_IN_FLIGHT_PER_CONNECTION);
    let (closed_tx, mut closed_rx) = oneshot::channel::<()>();
    let process = process_loop(wr, queue_rx, closed_tx, peer, broker.clone());
    let writer = match current_listener() {
        Some(name) => tokio::spawn(LISTENER.scope(name, process)),
        None => tokio::spawn(LISTENER.scope(Arc::from(""), process)),
    };
    let max = broker.config.socket_request_max_bytes;
    // spec: PRO-31 — a connection that sends nothing for
    // connections.max.idle.ms is closed.
    let idle = u64::try_from(broker.config.connections_max_idle_ms)
        .ok()
        .map(Duration::from_millis);
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    'read: loop {
        loop {
            match frame::check(&buf, max) {
                Ok(Some(len)) => {
                    let frame = buf.split_to(frame::LENGTH_BYTES + len).freeze();
                    let frame = frame.slice(frame::LENGTH_BYTES..);
                    if queue_tx.send(frame).await.is_err() {
                        break 'read;
                    }
                }
                Ok(None) => {
                    if buf.capacity() - buf.len() < READ_BUFFER_BYTES / 2 {
                        buf.reserve(READ_BUFFER_BYTES);
                    }
                    break;
                }
                Err(e) => {
                    // spec: PRO-2, PRO-4 — only this connection is closed.
                    tracing::info!(%peer, error = %e, "closing connection: bad frame");
                    break 'read;
                }
            }
        }
        tokio::select! {
            res = rd.read_buf(&mut buf) => match res {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    break;
                }
            },
            _ = &mut closed_rx => break,
            () = stopped(&mut stop) => break,
            () = idle_timeout(idle) => {
                tracing::debug!(%peer, "closing idle connection");
                break;
            }
        }
    }
    // The processor answers everything already queued, then closes.
    drop(queue_tx);
    let _ = writer.await;
}

/// Handles queued requests one at a time and writes their responses.
async fn process_loop(
    wr: tokio::net::tcp::OwnedWriteHalf,
    mut queue: mpsc::Receiver<Bytes>,
    closed: oneshot::Sender<()>,
    peer: SocketAddr,
    broker: Arc<Broker>,
) {
    // Requests are handled one after another, in order; their answers go to
    // the writer in the same order. An acks=all Produce hands over a
    // deferred answer, so the next requests are handled while it waits for
    // replication, and answers still leave in request order (spec: PRO-91).
    let (out_tx, out_rx) = mpsc::channel::<Outcome>(MAX_IN_FLIGHT_PER_CONNECTION);
    let writer = tokio::spawn(write_loop(wr, out_rx, peer));
    while let Some(frame) = queue.recv().await {
        let outcome = protocol::handle_frame(&broker, frame).await;
        let close = matches!(outcome, Outcome::Close(_));
        if out_tx.send(outcome).await.is_err() || close {
            break;
        }
    }
    drop(out_tx);
    let _ = writer.await;
    let _ = closed.send(());
}

/// Writes the answers of one connection in request order; stops at the
/// first failed write or `Close`.
async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut answers: mpsc::Receiver<Outcome>,
    peer: SocketAddr,
) {
    while let Some(mut outcome) = answers.recv().await {
        if let Outcome::Deferred(task) = outcome {
            outcome = match task.await {
                Ok(o) => o,
                Err(e) => Outcome::Close(format!("produce answer task failed: {e}")),
            };
        }
        match outcome {
            Outcome::Respond(bytes) => {
                if let Err(e) = wr.write_all(&bytes).await {
                    tracing::debug!(%peer, error = %e, "write failed");
                    break;
                }
            }
            Outcome::RespondParts(parts) => {
                if let Err(e) = write_parts(&mut wr, parts).await {
                    tracing::debug!(%peer, error = %e, "write failed");
                    break;
                }
            }
            Outcome::Silent => {}
            Outcome::Deferred(_) => {
                tracing::warn!(%peer, "a deferred answer resolved to another deferral; closing");
                break;
            }
            Outcome::Close(reason) => {
                tracing::info!(%peer, %reason, "closing connection");
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
}
