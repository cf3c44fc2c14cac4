//! A small native Kafka client for the CLI and tools: one connection to one
//! broker (the embedded single-node mode), requests encoded with the
//! `kafka-protocol` crate at fixed modern versions that are checked against
//! the broker's ApiVersions table on connect.
//!
//! Record routing follows `spec/client.md` (PRD-1 … PRD-3) through
//! `gregor_core::partitioner`; [`router::Router`] sends each partition's
//! requests to its leader (PRD-7 … PRD-9).

pub mod group;
pub mod router;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest,
    ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Largest response frame the client accepts.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Client-side errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed.
    #[error("connection to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A request or response did not encode or decode.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The broker lacks an API version the client uses.
    #[error("the broker does not support {api:?} v{version}")]
    Unsupported {
        /// The API.
        api: ApiKey,
        /// The version the client needs.
        version: i16,
    },
    /// The broker answered with a Kafka error code.
    #[error(
        "{what}: {} (Kafka error {code}){}",
        kafka_protocol::ResponseError::try_from_code(*code).map(|e| e.to_string()).unwrap_or_else(|| "unknown error".into()),
        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    Kafka {
        /// What was being done.
        what: String,
        /// The error code.
        code: i16,
        /// The broker's message, when it sent one.
        message: Option<String>,
    },
    /// A produce request went out but its answer never came back: the
    /// records may or may not have been written, so it is not retried
    /// (spec: PRD-9).
    #[error(
        "{what}: the connection broke after the request was sent, so the records \
         may or may not have been written (not retried): {source}"
    )]
    Unacknowledged {
        /// The request, naming the partition and the broker.
        what: String,
        /// How the connection broke.
        source: Box<ClientError>,
    },
    /// Retries ran out of time (spec: PRD-8).
    #[error("{what}: gave up after {after_ms} ms of retries; last error: {last}")]
    Timeout {
        /// What was being done.
        what: String,
        /// How long it was retried.
        after_ms: u128,
        /// The last failure.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// The Kafka error code, when the broker answered with one.
    #[must_use]
    pub fn code(&self) -> Option<i16> {
        match self {
            Self::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn kafka_error(what: impl Into<String>, code: i16, message: Option<&StrBytes>) -> ClientError {
    ClientError::Kafka {
        what: what.into(),
        code,
        message: message.map(|m| m.to_string()),
    }
}

/// Versions the client speaks.
const METADATA_V: i16 = 12;
pub(crate) const PRODUCE_V: i16 = 9;
const FETCH_V: i16 = 12;
const LIST_OFFSETS_V: i16 = 7;
const DELETE_RECORDS_V: i16 = 2;
const CREATE_TOPICS_V: i16 = 5;
const DELETE_TOPICS_V: i16 = 4;

/// One connection to a broker.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
    client_id: StrBytes,
}

/// A topic name as the protocol carries it.
pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

impl Client {
    /// Connects and checks that the broker speaks the versions used here.
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let mut c = Self {
            stream,
            correlation_id: 0,
            client_id: StrBytes::from_static_str("gregor-cli"),
        };
        let resp = c.call(3, &ApiVersionsRequest::default()).await?;
        if resp.error_code != 0 {
            return Err(kafka_error("ApiVersions", resp.error_code, None));
        }
        for (api, version) in [
            (ApiKey::Metadata, METADATA_V),
            (ApiKey::Produce, PRODUCE_V),
            (ApiKey::Fetch, FETCH_V),
            (ApiKey::ListOffsets, LIST_OFFSETS_V),
            (ApiKey::CreateTopics, CREATE_TOPICS_V),
            (ApiKey::DeleteTopics, DELETE_TOPICS_V),
        ] {
            let ok = resp.api_keys.iter().any(|k| {
                k.api_key == api as i16 && k.min_version <= version && version <= k.max_version
            });
            if !ok {
                return Err(ClientError::Unsupported { api, version });
            }
        }
        Ok(c)
    }

    /// Connects to the first address of a comma-separated bootstrap list
    /// that answers.
    pub async fn connect_any(bootstrap: &str) -> Result<Self, ClientError> {
        let mut last = None;
        for addr in router::parse_bootstrap(bootstrap)? {
            match Self::connect(&addr).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol("empty bootstrap list".into())))
    }

    /// Sends one request and reads its response.
    pub async fn call<R: Request>(
        &mut self,
        version: i16,
        req: &R,
    ) -> Result<R::Response, ClientError> {
        let id = self.send_request(version, req).await?;
        self.recv_response::<R>(version, id).await
    }

    /// Writes one request without reading its response; returns its
    /// correlation id. An error means the frame was not written whole, so
    /// the broker cannot have acted on it.
    pub async fn send_request<R: Request>(
        &mut self,
        version: i16,
        req: &R,
    ) -> Result<i32, ClientError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        let proto = |e: anyhow::Error| ClientError::Protocol(e.to_string());
        header
            .encode(&mut body, R::header_version(version))
            .map_err(proto)?;
        req.encode(&mut body, version).map_err(proto)?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await?;
        Ok(self.correlation_id)
    }

    /// Reads the response to the request sent as `correlation_id`.
    pub async fn recv_response<R: Request>(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response, ClientError> {
        read_response::<R, _>(&mut self.stream, version, correlation_id).await
    }

    /// Splits the connection into a produce sender and a response receiver
    /// so that several Produce requests can be in flight at once; the broker
    /// answers them in order (spec: PRD-4).
    pub fn into_pipeline(self) -> (ProduceSender, ProduceReceiver) {
        let (read, write) = self.stream.into_split();
        (
            ProduceSender {
                write,
                correlation_id: self.correlation_id,
                client_id: self.client_id,
                frame: BytesMut::new(),
            },
            ProduceReceiver { read },
        )
    }

    /// Metadata for `topics` (all topics when `None`), never auto-creating.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
    ) -> Result<MetadataResponse, ClientError> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(name(t))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        self.call(METADATA_V, &req).await
    }

    /// The partition count of `topic`.
    pub async fn partitions(&mut self, topic: &str) -> Result<i32, ClientError> {
        let md = self.metadata(Some(&[topic.to_owned()])).await?;
        let t = md
            .topics
            .first()
            .ok_or_else(|| ClientError::Protocol("empty metadata".into()))?;
        if t.error_code != 0 {
            return Err(kafka_error(format!("topic {topic}"), t.error_code, None));
        }
        Ok(t.partitions.len() as i32)
    }

    /// Creates a topic (-1 partitions / replication factor: broker defaults).
    pub async fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<(), ClientError> {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(name(topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication_factor)
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(Some(StrBytes::from_string(v.clone())))
                            })
                            .collect(),
                    ),
            ])
            .with_timeout_ms(30_000);
        let resp = self.call(CREATE_TOPICS_V, &req).await?;
        match resp.topics.first() {
            Some(t) if t.error_code == 0 => Ok(()),
            Some(t) => Err(kafka_error(
                format!("create {topic}"),
                t.error_code,
                t.error_message.as_ref(),
            )),
            None => Err(ClientError::Protocol("empty CreateTopics response".into())),
        }
    }

    /// Deletes a topic.
    pub async fn delete_topic(&mut self, topic: &str) -> Result<(), ClientError> {
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![name(topic)])
            .with_timeout_ms(30_000);
        let resp = self.call(DELETE_TOPICS_V, &req).await?;
        match resp.responses.first() {
            Some(t) if t.error_code == 0 => Ok(()),
            Some(t) => Err(kafka_error(
                format!("delete {topic}"),
                t.error_code,
                t.error_message.as_ref(),
            )),
            None => Err(ClientError::Protocol("empty DeleteTopics response".into())),
        }
    }

    /// Changes a topic's config overrides with IncrementalAlterConfigs v1:
    /// `set` keys get their values, `delete` keys go back to the default
    /// (spec: PRO-27).
    pub async fn alter_topic_configs(
        &mut self,
        topic: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<(), ClientError> {
        use kafka_protocol::messages::IncrementalAlterConfigsRequest;
        use kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(1)
                .with_value(None)
        }));
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configs(configs),
        ]);
        let resp = self.call(1, &req).await?;
        match resp.responses.first() {
            Some(r) if r.error_code == 0 => Ok(()),
            Some(r) => Err(kafka_error(
                format!("alter configs of {topic}"),
                r.error_code,
                r.error_message.as_ref(),
            )),
            None => Err(ClientError::Protocol(
                "empty IncrementalAlterConfigs response".into(),
            )),
        }
    }

    /// A topic's configs with DescribeConfigs v4: (name, value, whether it
    /// is a topic override).
    pub async fn topic_configs(
        &mut self,
        topic: &str,
    ) -> Result<Vec<(String, Option<String>, bool)>, ClientError> {
        use kafka_protocol::messages::DescribeConfigsRequest;
        use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configuration_keys(None),
        ]);
        let resp = self.call(4, &req).await?;
        match resp.results.first() {
            Some(r) if r.error_code == 0 => Ok(r
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.value.as_ref().map(ToString::to_string),
                        c.config_source == 1,
                    )
                })
                .collect()),
            Some(r) => Err(kafka_error(
                format!("describe configs of {topic}"),
                r.error_code,
                r.error_message.as_ref(),
            )),
            None => Err(ClientError::Protocol(
                "empty DescribeConfigs response".into(),
            )),
        }
    }

    /// Produces one record set to a partition; returns its base offset
    /// (`None` for acks=0).
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> Result<Option<i64>, ClientError> {
        let req = produce_request(topic, partition, records, acks);
        // With acks=0 no response comes back: send the frame only.
        let id = self.send_request(PRODUCE_V, &req).await?;
        if acks == 0 {
            return Ok(None);
        }
        let resp = self.recv_response::<ProduceRequest>(PRODUCE_V, id).await?;
        produce_result(&resp, topic, partition).map(Some)
    }

    /// Fetches from several partitions of `topic` in one request, each from
    /// its own offset; partition errors are returned, not raised.
    pub async fn fetch_partitions(
        &mut self,
        topic: &str,
        positions: &[(i32, i64)],
        max_wait_ms: i32,
        max_bytes: i32,
        partition_max_bytes: i32,
    ) -> Result<Vec<FetchedPartition>, ClientError> {
        let positions: Vec<(i32, i64, i32)> = positions.iter().map(|&(p, o)| (p, o, -1)).collect();
        self.fetch_partitions_at(
            topic,
            &positions,
            max_wait_ms,
            max_bytes,
            partition_max_bytes,
        )
        .await
    }

    /// Like [`Client::fetch_partitions`] with each partition's
    /// (partition, offset, current leader epoch; -1: unchecked).
    pub async fn fetch_partitions_at(
        &mut self,
        topic: &str,
        positions: &[(i32, i64, i32)],
        max_wait_ms: i32,
        max_bytes: i32,
        partition_max_bytes: i32,
    ) -> Result<Vec<FetchedPartition>, ClientError> {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(
                        positions
                            .iter()
                            .map(|&(p, offset, epoch)| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_current_leader_epoch(epoch)
                                    .with_fetch_offset(offset)
                                    .with_partition_max_bytes(partition_max_bytes)
                            })
                            .collect(),
                    ),
            ]);
        let resp = self.call(FETCH_V, &req).await?;
        if resp.error_code != 0 {
            return Err(kafka_error(format!("fetch {topic}"), resp.error_code, None));
        }
        Ok(resp
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .map(|p| FetchedPartition {
                partition: p.partition_index,
                error_code: p.error_code,
                high_watermark: p.high_watermark,
                records: p.records.unwrap_or_default(),
                retry: false,
            })
            .collect())
    }

    /// Fetches from one partition; returns (high watermark, record bytes).
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> Result<(i64, Bytes), ClientError> {
        self.fetch_at(topic, partition, offset, -1, max_wait_ms, max_bytes)
            .await
    }

    /// Like [`Client::fetch`], checking the partition's current leader
    /// epoch (-1: unchecked).
    pub async fn fetch_at(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        leader_epoch: i32,
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> Result<(i64, Bytes), ClientError> {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(leader_epoch)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(max_bytes),
                    ]),
            ]);
        let resp = self.call(FETCH_V, &req).await?;
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol("empty Fetch response".into()))?;
        if p.error_code != 0 {
            return Err(kafka_error(
                format!("fetch {topic}-{partition}@{offset}"),
                p.error_code,
                None,
            ));
        }
        Ok((p.high_watermark, p.records.clone().unwrap_or_default()))
    }

    /// ListOffsets: -2 earliest, -1 latest, else the first offset at or
    /// after the timestamp (-1 when none).
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        self.list_offset_at(topic, partition, -1, timestamp).await
    }

    /// Like [`Client::list_offset`], checking the partition's current
    /// leader epoch (-1: unchecked).
    pub async fn list_offset_at(
        &mut self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_current_leader_epoch(leader_epoch)
                            .with_timestamp(timestamp),
                    ]),
            ]);
        let resp = self.call(LIST_OFFSETS_V, &req).await?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol("empty ListOffsets response".into()))?;
        if p.error_code != 0 {
            return Err(kafka_error(
                format!("list offsets {topic}-{partition}"),
                p.error_code,
                None,
            ));
        }
        Ok(p.offset)
    }
}

impl Client {
    /// DeleteRecords (v2) for one partition at this broker: deletes the
    /// records below `offset` (-1: below the high watermark) and returns
    /// the partition's low watermark afterwards.
    pub async fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<i64, ClientError> {
        use kafka_protocol::messages::DeleteRecordsRequest;
        use kafka_protocol::messages::delete_records_request::{
            DeleteRecordsPartition, DeleteRecordsTopic,
        };
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        DeleteRecordsPartition::default()
                            .with_partition_index(partition)
                            .with_offset(offset),
                    ]),
            ]);
        let resp = self.call(DELETE_RECORDS_V, &req).await?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol("empty DeleteRecords response".into()))?;
        if p.error_code != 0 {
            return Err(kafka_error(
                format!("delete records of {topic}-{partition}"),
                p.error_code,
                None,
            ));
        }
        Ok(p.low_watermark)
    }
}

/// A Produce request for one record set of one partition.
pub(crate) fn produce_request(
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ])
}

/// The base offset of a one-partition Produce response, or its error.
pub(crate) fn produce_result(
    resp: &kafka_protocol::messages::ProduceResponse,
    topic: &str,
    partition: i32,
) -> Result<i64, ClientError> {
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .ok_or_else(|| ClientError::Protocol("empty Produce response".into()))?;
    if p.error_code != 0 {
        return Err(kafka_error(
            format!("produce to {topic}-{partition}"),
            p.error_code,
            p.error_message.as_ref(),
        ));
    }
    Ok(p.base_offset)
}

/// Reads one response frame for `correlation_id` and decodes it as `R`'s
/// response.
async fn read_response<R: Request, S: AsyncReadExt + Unpin>(
    stream: &mut S,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, ClientError> {
    let proto = |e: anyhow::Error| ClientError::Protocol(e.to_string());
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = i32::from_be_bytes(len);
    if len < 4 || len as usize > MAX_RESPONSE_BYTES {
        return Err(ClientError::Protocol(format!(
            "response frame of {len} bytes"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await?;
    let mut buf = Bytes::from(buf);
    let key = ApiKey::try_from(R::KEY).map_err(|_| ClientError::Protocol("api key".into()))?;
    let rh =
        ResponseHeader::decode(&mut buf, key.response_header_version(version)).map_err(proto)?;
    if rh.correlation_id != correlation_id {
        return Err(ClientError::Protocol(format!(
            "correlation id {correlation_id} answered {}",
            rh.correlation_id
        )));
    }
    let resp = R::Response::decode(&mut buf, version).map_err(proto)?;
    if buf.has_remaining() {
        return Err(ClientError::Protocol("trailing bytes in response".into()));
    }
    Ok(resp)
}

/// One partition of a multi-partition fetch.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    /// The partition.
    pub partition: i32,
    /// Kafka error code (0: none).
    pub error_code: i16,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// Record batches as stored.
    pub records: Bytes,
    /// Nothing fetched because the partition's leader moved or could not
    /// be reached: ask again (spec: PRD-8).
    pub retry: bool,
}

/// The write half of a pipelined producer connection
/// ([`Client::into_pipeline`]).
#[derive(Debug)]
pub struct ProduceSender {
    write: OwnedWriteHalf,
    correlation_id: i32,
    client_id: StrBytes,
    frame: BytesMut,
}

impl ProduceSender {
    /// Writes one Produce request carrying `batches` (partition, record
    /// set) of `topic` without waiting for its response; returns the
    /// correlation id to hand to [`ProduceReceiver::recv`]. With acks=0 the
    /// broker sends no response.
    pub async fn send(
        &mut self,
        topic: &TopicName,
        batches: Vec<(i32, Bytes)>,
        acks: i16,
    ) -> Result<i32, ClientError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic.clone())
                    .with_partition_data(
                        batches
                            .into_iter()
                            .map(|(p, records)| {
                                PartitionProduceData::default()
                                    .with_index(p)
                                    .with_records(Some(records))
                            })
                            .collect(),
                    ),
            ]);
        let header = RequestHeader::default()
            .with_request_api_key(ProduceRequest::KEY)
            .with_request_api_version(PRODUCE_V)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let proto = |e: anyhow::Error| ClientError::Protocol(e.to_string());
        self.frame.clear();
        self.frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut self.frame, ProduceRequest::header_version(PRODUCE_V))
            .map_err(proto)?;
        req.encode(&mut self.frame, PRODUCE_V).map_err(proto)?;
        let len = (self.frame.len() - 4) as i32;
        self.frame[..4].copy_from_slice(&len.to_be_bytes());
        self.write.write_all(&self.frame).await?;
        Ok(self.correlation_id)
    }
}

/// The read half of a pipelined producer connection.
#[derive(Debug)]
pub struct ProduceReceiver {
    read: OwnedReadHalf,
}

impl ProduceReceiver {
    /// Reads the response to the request sent as `correlation_id` (the
    /// oldest one outstanding); returns each partition's base offset, or
    /// the first partition error.
    pub async fn recv(&mut self, correlation_id: i32) -> Result<Vec<(i32, i64)>, ClientError> {
        let resp =
            read_response::<ProduceRequest, _>(&mut self.read, PRODUCE_V, correlation_id).await?;
        let mut out = Vec::new();
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    return Err(kafka_error(
                        format!("produce to {}-{}", t.name.0, p.index),
                        p.error_code,
                        p.error_message.as_ref(),
                    ));
                }
                out.push((p.index, p.base_offset));
            }
        }
        Ok(out)
    }
}
