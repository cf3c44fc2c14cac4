//! Shared helpers for the protocol tests: an in-process broker on a free
//! loopback port and a raw frame client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use gregor_runtime::broker::Broker;
use gregor_runtime::config::BrokerConfig;
use gregor_runtime::server::{Server, ShutdownHandle};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A broker running inside the test process.
pub struct TestBroker {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub broker: Arc<Broker>,
    handle: ShutdownHandle,
    task: tokio::task::JoinHandle<()>,
}

impl TestBroker {
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), extra).await
    }

    pub async fn start_in(dir: tempfile::TempDir, extra: &[(&str, &str)]) -> Self {
        let mut pairs = vec![
            ("listeners".to_owned(), "PLAINTEXT://127.0.0.1:0".to_owned()),
            ("log.dirs".to_owned(), dir.path().display().to_string()),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = BrokerConfig::from_pairs(pairs).unwrap();
        let broker = Arc::new(Broker::open(config).unwrap());
        let server = Server::bind(broker.clone()).await.unwrap();
        let (addr, handle, task) = server.spawn();
        Self {
            addr,
            dir,
            broker,
            handle,
            task,
        }
    }

    pub async fn stop(self) -> tempfile::TempDir {
        drop(self.broker);
        self.handle.shutdown();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops")
            .unwrap();
        self.dir
    }

    pub async fn connect(&self) -> Conn {
        Conn::connect(self.addr).await
    }
}

/// A raw Kafka connection.
pub struct Conn {
    pub stream: TcpStream,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream }
    }

    /// Sends raw bytes (not framed).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one response frame (the bytes after the size), or None on EOF.
    pub async fn recv_frame(&mut self) -> Option<Bytes> {
        let read = async {
            let mut len = [0u8; 4];
            if self.stream.read_exact(&mut len).await.is_err() {
                return None;
            }
            let len = i32::from_be_bytes(len) as usize;
            let mut buf = vec![0u8; len];
            self.stream.read_exact(&mut buf).await.ok()?;
            Some(Bytes::from(buf))
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("response within 10s")
    }

    /// True once the broker has closed the connection.
    pub async fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    /// Sends a request built with kafka-protocol and decodes the response.
    pub async fn call<Req>(&mut self, version: i16, correlation_id: i32, req: &Req) -> Req::Response
    where
        Req: kafka_protocol::protocol::Request,
    {
        self.send_raw(&encode_request(version, correlation_id, req))
            .await;
        let mut frame = self.recv_frame().await.expect("response frame");
        let key = ApiKey::try_from(Req::KEY).unwrap();
        let header_version = key.response_header_version(version);
        let got =
            kafka_protocol::messages::ResponseHeader::decode(&mut frame, header_version).unwrap();
        assert_eq!(got.correlation_id, correlation_id);
        let resp = Req::Response::decode(&mut frame, version).unwrap();
        assert_eq!(frame.remaining(), 0, "response has trailing bytes");
        resp
    }

    /// Sends a hand-built body under a header v1 and returns the response
    /// body (after a v0 response header).
    pub async fn call_raw(
        &mut self,
        key: i16,
        version: i16,
        correlation_id: i32,
        body: &[u8],
    ) -> Bytes {
        self.send_raw(&raw_request(key, version, correlation_id, body))
            .await;
        let mut frame = self.recv_frame().await.expect("response frame");
        assert_eq!(frame.get_i32(), correlation_id);
        frame
    }
}

/// A complete request frame built with kafka-protocol.
pub fn encode_request<Req: kafka_protocol::protocol::Request>(
    version: i16,
    correlation_id: i32,
    req: &Req,
) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(Req::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("gregor-test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, Req::header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut out = BytesMut::new();
    out.put_i32(body.len() as i32);
    out.extend_from_slice(&body);
    out
}

/// A frame with a v1 header (client id "t") and a hand-built body.
pub fn raw_request(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_i32((8 + 3 + body.len()) as i32);
    out.put_i16(key);
    out.put_i16(version);
    out.put_i32(correlation_id);
    out.put_i16(1);
    out.put_u8(b't');
    out.extend_from_slice(body);
    out
}

/// Appends an int16-length string.
pub fn put_str(out: &mut BytesMut, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

/// Reads an int16-length string.
pub fn get_str(b: &mut Bytes) -> String {
    let n = b.get_i16();
    if n < 0 {
        return String::new();
    }
    String::from_utf8(b.split_to(n as usize).to_vec()).unwrap()
}
