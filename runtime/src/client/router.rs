//! Leader-aware routing: a bootstrap list, a metadata cache (broker id →
//! address, partition → leader and leader epoch) and one connection per
//! broker, opened on demand. Requests for a partition go to its leader;
//! the errors that mean "ask someone else" refresh the metadata and retry
//! with backoff until a deadline (spec: PRD-7 … PRD-9).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ProduceRequest;

use super::{
    Client, ClientError, FetchedPartition, PRODUCE_V, kafka_error, produce_request, produce_result,
};

/// How long a request is retried by default, like Kafka's
/// `delivery.timeout.ms`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The first pause between retries; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest pause between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Kafka's LEADER_NOT_AVAILABLE.
pub const LEADER_NOT_AVAILABLE: i16 = 5;
/// Kafka's NOT_LEADER_OR_FOLLOWER.
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// Kafka's NOT_ENOUGH_REPLICAS (refused before the append).
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
/// Kafka's FENCED_LEADER_EPOCH.
pub const FENCED_LEADER_EPOCH: i16 = 74;
/// Kafka's UNKNOWN_LEADER_EPOCH.
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// spec: PRD-8 — the partition error codes that a metadata refresh and a
/// retry may cure (UNKNOWN_TOPIC_OR_PARTITION is decided separately: only
/// while the metadata still lists the partition).
#[must_use]
pub fn retriable(code: i16) -> bool {
    matches!(
        code,
        LEADER_NOT_AVAILABLE
            | NOT_LEADER_OR_FOLLOWER
            | NOT_ENOUGH_REPLICAS
            | FENCED_LEADER_EPOCH
            | UNKNOWN_LEADER_EPOCH
    )
}

/// Splits a comma-separated bootstrap list (`host:port,host:port`).
pub fn parse_bootstrap(bootstrap: &str) -> Result<Vec<String>, ClientError> {
    let addrs: Vec<String> = bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::Protocol(format!(
            "no broker address in bootstrap list {bootstrap:?}"
        )));
    }
    Ok(addrs)
}

/// A partition's leader as the metadata last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leader {
    /// The leader's broker id.
    pub broker: i32,
    /// Its leader epoch.
    pub epoch: i32,
}

/// One attempt's failure: try again after a refresh, or give up.
#[derive(Debug)]
enum Attempt {
    Retry(ClientError),
    Fatal(ClientError),
}

/// Backoff and deadline of one operation.
#[derive(Debug)]
struct Retry {
    started: Instant,
    deadline: Instant,
    backoff: Duration,
}

impl Retry {
    fn new(timeout: Duration) -> Self {
        let started = Instant::now();
        Self {
            started,
            deadline: started + timeout,
            backoff: BACKOFF_MIN,
        }
    }

    /// Sleeps before the next attempt, or returns the timeout error.
    async fn pause(&mut self, what: &str, err: ClientError) -> Result<(), ClientError> {
        if Instant::now() + self.backoff > self.deadline {
            return Err(ClientError::Timeout {
                what: what.to_owned(),
                after_ms: self.started.elapsed().as_millis(),
                last: Box::new(err),
            });
        }
        tracing::debug!(%err, backoff_ms = self.backoff.as_millis() as u64, "{what}: retrying");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        Ok(())
    }
}

/// A topic as the metadata last described it.
#[derive(Debug, Clone, Default)]
struct TopicMeta {
    /// The topic-level error code (0: none).
    error: i16,
    /// Each partition's leader (`None`: no leader right now).
    partitions: BTreeMap<i32, Option<Leader>>,
}

/// Routes requests to partition leaders over pooled connections.
#[derive(Debug)]
pub struct Router {
    bootstrap: Vec<String>,
    /// Broker id → `host:port`, from the last Metadata.
    brokers: BTreeMap<i32, String>,
    topics: BTreeMap<String, TopicMeta>,
    /// Open connections by address.
    conns: BTreeMap<String, Client>,
    timeout: Duration,
    /// Partitions a multi-partition fetch could not reach, since when.
    unreachable: BTreeMap<(String, i32), Instant>,
    /// Consecutive fetch rounds with unreachable partitions.
    fetch_backoff: Duration,
}

impl Router {
    /// A router over the comma-separated `bootstrap` list; `timeout` bounds
    /// the retries of each request. Nothing is dialled yet.
    pub fn new(bootstrap: &str, timeout: Duration) -> Result<Self, ClientError> {
        Ok(Self {
            bootstrap: parse_bootstrap(bootstrap)?,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            conns: BTreeMap::new(),
            timeout,
            unreachable: BTreeMap::new(),
            fetch_backoff: Duration::ZERO,
        })
    }

    /// The retry deadline of each request.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Any open connection, else the first bootstrap address or known
    /// broker that accepts one (for requests any broker serves: topic
    /// administration, metadata).
    pub async fn any(&mut self) -> Result<&mut Client, ClientError> {
        let mut retry = Retry::new(self.timeout);
        loop {
            if let Some(addr) = self.conns.keys().next().cloned() {
                return Ok(self.conns.get_mut(&addr).unwrap_or_else(|| unreachable!()));
            }
            let mut last = None;
            for addr in self.candidates() {
                match Client::connect(&addr).await {
                    Ok(c) => {
                        self.conns.insert(addr.clone(), c);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if self.conns.is_empty() {
                let err = last.unwrap_or_else(|| ClientError::Protocol("no broker".into()));
                retry.pause("connecting to the cluster", err).await?;
            }
        }
    }

    /// Addresses to ask for metadata: open connections first, then the
    /// brokers the metadata named, then the bootstrap list.
    fn candidates(&self) -> Vec<String> {
        let mut out: Vec<String> = self.conns.keys().cloned().collect();
        for a in self.brokers.values().chain(self.bootstrap.iter()) {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// Asks one broker after another (open connections, known brokers,
    /// the bootstrap list) for the metadata of `topics` until one answers,
    /// and caches the answer.
    pub async fn refresh(&mut self, topics: &[&str]) -> Result<(), ClientError> {
        let wanted: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        let mut last = None;
        for addr in self.candidates() {
            let conn = match self.conns.get_mut(&addr) {
                Some(c) => c,
                None => match Client::connect(&addr).await {
                    Ok(c) => self.conns.entry(addr.clone()).or_insert(c),
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                },
            };
            match conn.metadata(Some(&wanted)).await {
                Ok(md) => {
                    self.brokers = md
                        .brokers
                        .iter()
                        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
                        .collect();
                    for t in &md.topics {
                        let Some(name) = &t.name else { continue };
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|p| {
                                let leader = (p.leader_id.0 >= 0).then_some(Leader {
                                    broker: p.leader_id.0,
                                    epoch: p.leader_epoch,
                                });
                                (p.partition_index, leader)
                            })
                            .collect();
                        self.topics.insert(
                            name.0.to_string(),
                            TopicMeta {
                                error: t.error_code,
                                partitions,
                            },
                        );
                    }
                    return Ok(());
                }
                Err(e) => {
                    // spec: PRD-8 — a broken connection leaves the pool.
                    self.conns.remove(&addr);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol("no broker to ask".into())))
    }

    /// The partition count of `topic`, from fresh metadata. A topic the
    /// cluster does not know is an error at once; a topic without leaders
    /// yet (just created) and unreachable brokers are retried.
    pub async fn partitions(&mut self, topic: &str) -> Result<i32, ClientError> {
        let mut retry = Retry::new(self.timeout);
        let what = format!("metadata of {topic}");
        loop {
            let err = match self.refresh(&[topic]).await {
                Ok(()) => match self.topics.get(topic) {
                    Some(t) if t.error == 0 && !t.partitions.is_empty() => {
                        return Ok(t.partitions.len() as i32);
                    }
                    Some(t) if t.error == 0 || retriable(t.error) => {
                        kafka_error(format!("topic {topic}"), LEADER_NOT_AVAILABLE, None)
                    }
                    Some(t) => return Err(kafka_error(format!("topic {topic}"), t.error, None)),
                    None => return Err(ClientError::Protocol("empty metadata".into())),
                },
                Err(e) => e,
            };
            retry.pause(&what, err).await?;
        }
    }

    /// Waits (within the timeout) until metadata names a leader for every
    /// partition of `topic`; returns each partition's leader.
    pub async fn leaders(&mut self, topic: &str) -> Result<BTreeMap<i32, Leader>, ClientError> {
        let mut retry = Retry::new(self.timeout);
        let what = format!("leaders of {topic}");
        loop {
            self.partitions(topic).await?;
            let t = &self.topics[topic];
            if t.partitions.values().all(Option::is_some) {
                return Ok(t
                    .partitions
                    .iter()
                    .filter_map(|(&p, l)| l.map(|l| (p, l)))
                    .collect());
            }
            let err = kafka_error(format!("topic {topic}"), LEADER_NOT_AVAILABLE, None);
            retry.pause(&what, err).await?;
        }
    }

    /// The cached leader of a partition.
    #[must_use]
    pub fn leader(&self, topic: &str, partition: i32) -> Option<Leader> {
        self.topics
            .get(topic)?
            .partitions
            .get(&partition)
            .copied()?
    }

    /// The address of broker `id`, from the last metadata.
    #[must_use]
    pub fn broker_addr(&self, id: i32) -> Option<&str> {
        self.brokers.get(&id).map(String::as_str)
    }

    /// The pooled connection to broker `id`, opened if needed.
    pub async fn broker(&mut self, id: i32) -> Result<&mut Client, ClientError> {
        let Some(addr) = self.brokers.get(&id).cloned() else {
            return Err(kafka_error(
                format!("broker {id} is not in the metadata"),
                LEADER_NOT_AVAILABLE,
                None,
            ));
        };
        if !self.conns.contains_key(&addr) {
            let c = Client::connect(&addr).await?;
            self.conns.insert(addr.clone(), c);
        }
        Ok(self.conns.get_mut(&addr).unwrap_or_else(|| unreachable!()))
    }

    /// Takes broker `id`'s connection out of the pool (opening one if
    /// needed), e.g. to turn it into a produce pipeline.
    pub async fn take_broker(&mut self, id: i32) -> Result<Client, ClientError> {
        self.broker(id).await?;
        let addr = self.brokers[&id].clone();
        Ok(self.conns.remove(&addr).unwrap_or_else(|| unreachable!()))
    }

    fn drop_broker(&mut self, id: i32) {
        if let Some(addr) = self.brokers.get(&id) {
            self.conns.remove(addr);
        }
    }

    /// The leader of a partition, refreshing the metadata when the cache
    /// has none; a partition the metadata lacks is fatal (spec: PRD-3).
    async fn route(&mut self, topic: &str, partition: i32) -> Result<Leader, Attempt> {
        if !self.topics.contains_key(topic) {
            self.refresh(&[topic]).await.map_err(Attempt::Retry)?;
        }
        match self.topics.get(topic) {
            None => Err(Attempt::Retry(ClientError::Protocol(format!(
                "no metadata for {topic}"
            )))),
            Some(t) if t.error != 0 && !retriable(t.error) => Err(Attempt::Fatal(kafka_error(
                format!("topic {topic}"),
                t.error,
                None,
            ))),
            Some(t) => match t.partitions.get(&partition) {
                Some(Some(l)) => Ok(*l),
                Some(None) => Err(Attempt::Retry(kafka_error(
                    format!("{topic}-{partition} has no leader"),
                    LEADER_NOT_AVAILABLE,
                    None,
                ))),
                None if t.partitions.is_empty() => Err(Attempt::Retry(kafka_error(
                    format!("topic {topic}"),
                    LEADER_NOT_AVAILABLE,
                    None,
                ))),
                None => Err(Attempt::Fatal(kafka_error(
                    format!("{topic}-{partition} does not exist"),
                    UNKNOWN_TOPIC_OR_PARTITION,
                    None,
                ))),
            },
        }
    }

    /// Classifies a partition error code from a leader: retry after a
    /// refresh, or give up (spec: PRD-8).
    async fn classify(&mut self, topic: &str, partition: i32, err: ClientError) -> Attempt {
        match err.code() {
            Some(code) if retriable(code) => Attempt::Retry(err),
            Some(UNKNOWN_TOPIC_OR_PARTITION) => {
                // A broker that has not learnt of a new topic yet answers
                // so; retry only while the metadata still lists the
                // partition.
                let listed = self.refresh(&[topic]).await.is_ok()
                    && self
                        .topics
                        .get(topic)
                        .is_some_and(|t| t.error == 0 && t.partitions.contains_key(&partition));
                if listed {
                    Attempt::Retry(err)
                } else {
                    Attempt::Fatal(err)
                }
            }
            _ => Attempt::Fatal(err),
        }
    }

    /// After a failed attempt: the error when it is final or the deadline
    /// passed; otherwise backs off and refreshes the metadata of `topic`.
    async fn after(
        &mut self,
        retry: &mut Retry,
        topic: &str,
        what: &str,
        failure: Attempt,
    ) -> Result<(), ClientError> {
        match failure {
            Attempt::Fatal(e) => Err(e),
            Attempt::Retry(e) => {
                retry.pause(what, e).await?;
                // A failed refresh shows up in the next attempt.
                let _ = self.refresh(&[topic]).await;
                Ok(())
            }
        }
    }

    /// spec: PRD-7, PRD-8, PRD-9 — produces one record set to the
    /// partition's leader; returns the base offset (`None` for acks=0).
    /// Refused requests are retried; a connection that breaks after the
    /// request went out is reported, never retried.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> Result<Option<i64>, ClientError> {
        let what = format!("produce to {topic}-{partition}");
        let mut retry = Retry::new(self.timeout);
        loop {
            match self.produce_once(topic, partition, &records, acks).await {
                Ok(v) => return Ok(v),
                Err(failure) => self.after(&mut retry, topic, &what, failure).await?,
            }
        }
    }

    async fn produce_once(
        &mut self,
        topic: &str,
        partition: i32,
        records: &Bytes,
        acks: i16,
    ) -> Result<Option<i64>, Attempt> {
        let leader = self.route(topic, partition).await?;
        let req = produce_request(topic, partition, records.clone(), acks);
        let conn = match self.broker(leader.broker).await {
            Ok(c) => c,
            Err(e) => {
                self.drop_broker(leader.broker);
                return Err(Attempt::Retry(e));
            }
        };
        let id = match conn.send_request(PRODUCE_V, &req).await {
            Ok(id) => id,
            Err(e) => {
                // The frame did not go out whole: nothing was written.
                self.drop_broker(leader.broker);
                return Err(Attempt::Retry(e));
            }
        };
        if acks == 0 {
            return Ok(None);
        }
        let resp = match conn.recv_response::<ProduceRequest>(PRODUCE_V, id).await {
            Ok(resp) => resp,
            Err(e) => {
                let addr = self.broker_addr(leader.broker).unwrap_or("?").to_owned();
                self.drop_broker(leader.broker);
                // spec: PRD-9 — the write may have landed.
                return Err(Attempt::Fatal(ClientError::Unacknowledged {
                    what: format!(
                        "produce to {topic}-{partition} on broker {} ({addr})",
                        leader.broker
                    ),
                    source: Box::new(e),
                }));
            }
        };
        match produce_result(&resp, topic, partition) {
            Ok(base) => Ok(Some(base)),
            Err(e) => Err(self.classify(topic, partition, e).await),
        }
    }

    /// spec: PRD-7, PRD-8 — an idempotent request to `topic`-`partition`'s
    /// leader, sent again after a metadata refresh while the leader moves
    /// or cannot be reached, until the router's timeout.
    async fn at_leader<T>(
        &mut self,
        topic: &str,
        partition: i32,
        what: &str,
        mut request: impl AsyncFnMut(&mut Client, Leader) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut retry = Retry::new(self.timeout);
        loop {
            let failure = match self.route(topic, partition).await {
                Ok(leader) => {
                    let res = match self.broker(leader.broker).await {
                        Ok(c) => request(c, leader).await,
                        Err(e) => Err(e),
                    };
                    match self.read_result(topic, partition, leader, res).await {
                        Ok(v) => return Ok(v),
                        Err(f) => f,
                    }
                }
                Err(f) => f,
            };
            self.after(&mut retry, topic, what, failure).await?;
        }
    }

    /// ListOffsets at the partition's leader.
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        let what = format!("list offsets of {topic}-{partition}");
        self.at_leader(topic, partition, &what, async |c, leader| {
            c.list_offset_at(topic, partition, leader.epoch, timestamp)
                .await
        })
        .await
    }

    /// DeleteRecords at the partition's leader (moving the log start
    /// again is harmless); returns the low watermark.
    pub async fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<i64, ClientError> {
        let what = format!("delete records of {topic}-{partition}");
        self.at_leader(topic, partition, &what, async |c, _| {
            c.delete_records(topic, partition, offset).await
        })
        .await
    }

    /// Fetches one partition from its leader; returns (high watermark,
    /// record bytes).
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> Result<(i64, Bytes), ClientError> {
        let what = format!("fetch {topic}-{partition}@{offset}");
        self.at_leader(topic, partition, &what, async |c, leader| {
            c.fetch_at(
                topic,
                partition,
                offset,
                leader.epoch,
                max_wait_ms,
                max_bytes,
            )
            .await
        })
        .await
    }

    /// An idempotent read's outcome: broken connections leave the pool
    /// and are retried, like the refresh-and-retry error codes.
    async fn read_result<T>(
        &mut self,
        topic: &str,
        partition: i32,
        leader: Leader,
        res: Result<T, ClientError>,
    ) -> Result<T, Attempt> {
        match res {
            Ok(v) => Ok(v),
            Err(e @ (ClientError::Io(_) | ClientError::Connect { .. })) => {
                self.drop_broker(leader.broker);
                Err(Attempt::Retry(e))
            }
            Err(e @ ClientError::Kafka { .. }) => Err(self.classify(topic, partition, e).await),
            Err(e) => Err(Attempt::Fatal(e)),
        }
    }

    /// spec: PRD-7, PRD-8 — fetches several partitions of `topic`, one
    /// request per leader broker, all brokers at once. A partition whose
    /// leader moved or could not be reached comes back empty and marked
    /// `retry` after a metadata refresh, to be asked again at the next
    /// call; one that stays unreachable past the timeout is an
    /// error. Other partition errors are returned, not raised.
    pub async fn fetch_partitions(
        &mut self,
        topic: &str,
        positions: &[(i32, i64)],
        max_wait_ms: i32,
        max_bytes: i32,
        partition_max_bytes: i32,
    ) -> Result<Vec<FetchedPartition>, ClientError> {
        if !self.topics.contains_key(topic) {
            let _ = self.refresh(&[topic]).await;
        }
        let mut missed: Vec<(i32, ClientError)> = Vec::new();
        let mut by_broker: BTreeMap<i32, Vec<(i32, i64, i32)>> = BTreeMap::new();
        for &(p, offset) in positions {
            match self.leader(topic, p) {
                Some(l) => by_broker
                    .entry(l.broker)
                    .or_default()
                    .push((p, offset, l.epoch)),
                None => missed.push((
                    p,
                    kafka_error(
                        format!("{topic}-{p} has no leader"),
                        LEADER_NOT_AVAILABLE,
                        None,
                    ),
                )),
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (broker, parts) in by_broker {
            let mut conn = match self.take_broker(broker).await {
                Ok(c) => c,
                Err(e) => {
                    let msg = e.to_string();
                    missed.extend(parts.iter().map(|&(p, _, _)| {
                        (p, ClientError::Protocol(format!("broker {broker}: {msg}")))
                    }));
                    continue;
                }
            };
            let topic = topic.to_owned();
            tasks.spawn(async move {
                let res = conn
                    .fetch_partitions_at(
                        &topic,
                        &parts,
                        max_wait_ms,
                        max_bytes,
                        partition_max_bytes,
                    )
                    .await;
                (broker, conn, parts, res)
            });
        }
        let mut out = Vec::with_capacity(positions.len());
        while let Some(done) = tasks.join_next().await {
            let (broker, conn, parts, res) =
                done.map_err(|e| ClientError::Protocol(format!("fetch task: {e}")))?;
            match res {
                Ok(fetched) => {
                    if let Some(addr) = self.brokers.get(&broker) {
                        self.conns.insert(addr.clone(), conn);
                    }
                    for f in fetched {
                        let code = f.error_code;
                        if retriable(code) || code == UNKNOWN_TOPIC_OR_PARTITION {
                            missed.push((
                                f.partition,
                                kafka_error(format!("fetch {topic}-{}", f.partition), code, None),
                            ));
                        } else {
                            out.push(f);
                        }
                    }
                }
                Err(e) => {
                    // spec: PRD-8 — the broken connection is not put back;
                    // a fetch is idempotent, so its partitions are retried.
                    let msg = e.to_string();
                    missed.extend(parts.iter().map(|&(p, _, _)| {
                        (p, ClientError::Protocol(format!("broker {broker}: {msg}")))
                    }));
                }
            }
        }
        for f in &out {
            self.unreachable.remove(&(topic.to_owned(), f.partition));
        }
        if missed.is_empty() {
            self.fetch_backoff = Duration::ZERO;
            return Ok(out);
        }
        let _ = self.refresh(&[topic]).await;
        let listed = |r: &Self, p: i32| {
            r.topics
                .get(topic)
                .is_some_and(|t| t.error == 0 && t.partitions.contains_key(&p))
        };
        let now = Instant::now();
        for (p, err) in missed {
            if err.code() == Some(UNKNOWN_TOPIC_OR_PARTITION) && !listed(self, p) {
                return Err(err);
            }
            let since = *self.unreachable.entry((topic.to_owned(), p)).or_insert(now);
            if now.duration_since(since) > self.timeout {
                return Err(ClientError::Timeout {
                    what: format!("fetch {topic}-{p}"),
                    after_ms: now.duration_since(since).as_millis(),
                    last: Box::new(err),
                });
            }
            out.push(FetchedPartition {
                partition: p,
                error_code: 0,
                high_watermark: -1,
                records: Bytes::new(),
                retry: true,
            });
        }
        // Back off while partitions stay out of reach.
        self.fetch_backoff = (self.fetch_backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        tokio::time::sleep(self.fetch_backoff).await;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bytes::{Buf, BytesMut};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, ProduceResponse, RequestHeader,
        ResponseHeader,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// What the fake broker does with the n-th Produce request.
    #[derive(Debug, Clone, Copy)]
    enum OnProduce {
        /// Answer with this error code (0: success at offset 0).
        Answer(i16),
        /// Close the connection without answering.
        Hang,
    }

    /// A broker that leads partition 0 of topic `t` and handles Produce
    /// requests as `script` says; returns its address and the number of
    /// Produce requests it has received.
    async fn fake_broker(script: Vec<OnProduce>) -> (String, Arc<Mutex<usize>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let produced = Arc::new(Mutex::new(0usize));
        let seen = produced.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let seen = seen.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 4];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
                        s.read_exact(&mut buf).await.unwrap();
                        let mut buf = Bytes::from(buf);
                        let key = ApiKey::try_from((&buf[..2]).get_i16()).unwrap();
                        let version = (&buf[2..4]).get_i16();
                        let header =
                            RequestHeader::decode(&mut buf, key.request_header_version(version))
                                .unwrap();
                        let mut body = BytesMut::new();
                        match key {
                            ApiKey::ApiVersions => ApiVersionsResponse::default()
                                .with_api_keys(
                                    [0i16, 1, 2, 3, 19, 20]
                                        .iter()
                                        .map(|&k| {
                                            ApiVersion::default()
                                                .with_api_key(k)
                                                .with_min_version(0)
                                                .with_max_version(12)
                                        })
                                        .collect(),
                                )
                                .encode(&mut body, version)
                                .unwrap(),
                            ApiKey::Metadata => MetadataResponse::default()
                                .with_brokers(vec![
                                    MetadataResponseBroker::default()
                                        .with_node_id(BrokerId(1))
                                        .with_host(StrBytes::from_string(addr.ip().to_string()))
                                        .with_port(i32::from(addr.port())),
                                ])
                                .with_topics(vec![
                                    MetadataResponseTopic::default()
                                        .with_name(Some(crate::client::name("t")))
                                        .with_partitions(vec![
                                            MetadataResponsePartition::default()
                                                .with_partition_index(0)
                                                .with_leader_id(BrokerId(1)),
                                        ]),
                                ])
                                .encode(&mut body, version)
                                .unwrap(),
                            ApiKey::Produce => {
                                let n = {
                                    let mut seen = seen.lock().unwrap();
                                    *seen += 1;
                                    *seen
                                };
                                match script.get(n - 1).copied().unwrap_or(OnProduce::Answer(0)) {
                                    OnProduce::Hang => return,
                                    OnProduce::Answer(code) => ProduceResponse::default()
                                        .with_responses(vec![
                                            TopicProduceResponse::default()
                                                .with_name(crate::client::name("t"))
                                                .with_partition_responses(vec![
                                                    PartitionProduceResponse::default()
                                                        .with_index(0)
                                                        .with_error_code(code)
                                                        .with_base_offset(if code == 0 {
                                                            0
                                                        } else {
                                                            -1
                                                        }),
                                                ]),
                                        ])
                                        .encode(&mut body, version)
                                        .unwrap(),
                                }
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                        let mut head = BytesMut::new();
                        ResponseHeader::default()
                            .with_correlation_id(header.correlation_id)
                            .encode(&mut head, key.response_header_version(version))
                            .unwrap();
                        let len = (head.len() + body.len()) as i32;
                        s.write_all(&len.to_be_bytes()).await.unwrap();
                        s.write_all(&head).await.unwrap();
                        s.write_all(&body).await.unwrap();
                    }
                });
            }
        });
        (addr.to_string(), produced)
    }

    fn records() -> Bytes {
        let mut b =
            crate::storage::record::BatchBuilder::new(2, crate::storage::record::Codec::None, 0)
                .unwrap();
        b.append(1, None, Some(b"v"), &[]).unwrap();
        Bytes::from(b.build().unwrap())
    }

    // spec: PRD-8
    #[tokio::test]
    async fn a_refused_produce_is_retried_after_a_refresh() {
        let (addr, produced) = fake_broker(vec![
            OnProduce::Answer(NOT_LEADER_OR_FOLLOWER),
            OnProduce::Answer(NOT_ENOUGH_REPLICAS),
        ])
        .await;
        let mut r = Router::new(&addr, Duration::from_secs(10)).unwrap();
        let base = r.produce("t", 0, records(), -1).await.unwrap();
        assert_eq!(base, Some(0));
        assert_eq!(*produced.lock().unwrap(), 3);
    }

    // spec: PRD-8
    #[tokio::test]
    async fn retries_stop_at_the_deadline_with_the_last_error() {
        let (addr, produced) =
            fake_broker(vec![OnProduce::Answer(NOT_LEADER_OR_FOLLOWER); 100]).await;
        let mut r = Router::new(&addr, Duration::from_millis(500)).unwrap();
        let err = r.produce("t", 0, records(), -1).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Timeout { last, .. } if last.code() == Some(NOT_LEADER_OR_FOLLOWER)),
            "{err}"
        );
        // 100 ms, 200 ms, then 400 ms would pass the deadline.
        assert!((2..=4).contains(&*produced.lock().unwrap()), "{err}");
    }

    // spec: PRD-8
    #[tokio::test]
    async fn other_errors_are_not_retried() {
        // NOT_ENOUGH_REPLICAS_AFTER_APPEND: the records were written.
        let (addr, produced) = fake_broker(vec![OnProduce::Answer(20)]).await;
        let mut r = Router::new(&addr, Duration::from_secs(10)).unwrap();
        let err = r.produce("t", 0, records(), -1).await.unwrap_err();
        assert_eq!(err.code(), Some(20), "{err}");
        assert_eq!(*produced.lock().unwrap(), 1);
    }

    // spec: PRD-9
    #[tokio::test]
    async fn a_produce_whose_answer_is_lost_is_reported_not_retried() {
        let (addr, produced) = fake_broker(vec![OnProduce::Hang]).await;
        let mut r = Router::new(&addr, Duration::from_secs(10)).unwrap();
        let err = r.produce("t", 0, records(), -1).await.unwrap_err();
        assert!(matches!(err, ClientError::Unacknowledged { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("t-0") && msg.contains("broker 1"), "{msg}");
        assert_eq!(*produced.lock().unwrap(), 1, "sent once, never again");
    }

    // spec: PRD-8
    #[tokio::test]
    async fn an_unreachable_bootstrap_address_is_skipped() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let (addr, _) = fake_broker(Vec::new()).await;
        let mut r = Router::new(&format!("{dead_addr},{addr}"), Duration::from_secs(10)).unwrap();
        assert_eq!(r.partitions("t").await.unwrap(), 1);
        assert_eq!(r.produce("t", 0, records(), 1).await.unwrap(), Some(0));
    }

    #[test]
    fn bootstrap_lists_split_at_commas() {
        assert_eq!(
            parse_bootstrap("a:1, b:2,,c:3").unwrap(),
            vec!["a:1".to_owned(), "b:2".into(), "c:3".into()]
        );
        assert!(parse_bootstrap(" , ").is_err());
    }

    // spec: PRD-8
    #[test]
    fn only_the_refresh_and_retry_codes_are_retriable() {
        for code in [5, 6, 19, 74, 75] {
            assert!(retriable(code), "{code}");
        }
        // NOT_ENOUGH_REPLICAS_AFTER_APPEND (20) and REQUEST_TIMED_OUT (7)
        // may follow a write that landed; UNKNOWN_TOPIC_OR_PARTITION (3)
        // depends on the metadata; OFFSET_OUT_OF_RANGE (1) is the caller's.
        for code in [0, 1, 3, 7, 20, 87] {
            assert!(!retriable(code), "{code}");
        }
    }
}
