//! Metadata, DescribeCluster, DescribeLogDirs, CreateTopics, DeleteTopics,
//! CreatePartitions and DescribeConfigs over TCP, across versions (spec:
//! PRO-20..PRO-25, PRO-29, PRO-31, PRO-33, PRO-62), and ElectLeaders on a
//! single broker.

mod protocol_support;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource as IncrementalResource, AlterableConfig as IncrementalConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    AlterConfigsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use protocol_support::{Conn, TestBroker, get_str, put_str};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn metadata_for(topics: &[&str], auto: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(name(t))))
                .collect(),
        ))
        .with_allow_auto_topic_creation(auto)
}

fn creatable(t: &str, partitions: i32, rf: i16) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(t))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
}

async fn create(c: &mut Conn, version: i16, topics: Vec<CreatableTopic>) -> Vec<(String, i16)> {
    let req = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(5000);
    let resp = c.call(version, 1, &req).await;
    resp.topics
        .into_iter()
        .map(|t| (t.name.0.to_string(), t.error_code))
        .collect()
}

fn partitions_of(resp: &MetadataResponse, topic: &str) -> Option<(i16, usize)> {
    resp.topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        .map(|t| (t.error_code, t.partitions.len()))
}

// spec: PRO-20, PRO-21
#[tokio::test]
async fn metadata_lists_broker_and_auto_creates_across_versions() {
    let b = TestBroker::start(&[("num.partitions", "3")]).await;
    let mut c = b.connect().await;
    for v in 1..=12 {
        let topic = format!("auto-{v}");
        let resp = c
            .call(v, i32::from(v), &metadata_for(&[&topic], true))
            .await;
        assert_eq!(resp.brokers.len(), 1);
        assert_eq!(resp.brokers[0].host.as_str(), "127.0.0.1");
        assert_eq!(resp.brokers[0].port, i32::from(b.addr.port()));
        assert_eq!(resp.controller_id.0, 0, "v{v}");
        assert_eq!(partitions_of(&resp, &topic), Some((0, 3)), "v{v}");
        let p = &resp.topics[0].partitions[2];
        assert_eq!((p.partition_index, p.leader_id.0), (2, 0));
        assert_eq!(p.isr_nodes.len(), 1);
        if v >= 2 {
            assert_eq!(resp.cluster_id.as_ref().map(|c| c.len()), Some(22));
        }
    }
    // v4+: allow_auto_topic_creation=false leaves the topic unknown.
    let resp = c.call(9, 50, &metadata_for(&["manual"], false)).await;
    assert_eq!(partitions_of(&resp, "manual"), Some((3, 0)));
    // An illegal name is reported, not created.
    let resp = c.call(4, 51, &metadata_for(&["bad name"], true)).await;
    assert_eq!(partitions_of(&resp, "bad name"), Some((17, 0)));
    // Null topic list (v1+) = all topics.
    let all = c
        .call(12, 52, &MetadataRequest::default().with_topics(None))
        .await;
    assert_eq!(all.topics.len(), 12);
    // v0: an empty array means all topics. Hand-built.
    let mut body = BytesMut::new();
    body.put_i32(0);
    let mut r = c.call_raw(3, 0, 53, &body).await;
    let brokers = r.get_i32();
    assert_eq!(brokers, 1);
    assert_eq!(r.get_i32(), 0);
    assert_eq!(get_str(&mut r), "127.0.0.1");
    assert_eq!(r.get_i32(), i32::from(b.addr.port()));
    assert_eq!(r.get_i32(), 12, "v0 lists all topics");
    b.stop().await;
}

// spec: PRO-29
#[tokio::test]
async fn describe_cluster_gives_the_metadata_brokers_and_controller() {
    use kafka_protocol::messages::DescribeClusterRequest;
    let b = TestBroker::start(&[("broker.rack", "r1")]).await;
    let mut c = b.connect().await;
    let meta = c
        .call(12, 1, &MetadataRequest::default().with_topics(None))
        .await;
    for v in 0..=2 {
        let resp = c
            .call(
                v,
                10 + i32::from(v),
                &DescribeClusterRequest::default().with_endpoint_type(1),
            )
            .await;
        assert_eq!(resp.error_code, 0, "v{v}");
        assert_eq!(Some(&resp.cluster_id), meta.cluster_id.as_ref(), "v{v}");
        assert_eq!(resp.controller_id.0, 0);
        assert_eq!(resp.brokers.len(), 1);
        let broker = &resp.brokers[0];
        assert_eq!(broker.broker_id.0, 0);
        assert_eq!(broker.host.as_str(), "127.0.0.1");
        assert_eq!(broker.port, i32::from(b.addr.port()));
        assert_eq!(broker.rack.as_ref().map(|r| r.as_str()), Some("r1"));
        assert!(!broker.is_fenced);
        assert_eq!(resp.cluster_authorized_operations, i32::MIN);
    }
    // The controllers' endpoints are a KRaft notion a broker does not serve.
    let resp = c
        .call(
            1,
            20,
            &DescribeClusterRequest::default().with_endpoint_type(2),
        )
        .await;
    assert_eq!(resp.error_code, 119, "UNSUPPORTED_ENDPOINT_TYPE");
    b.stop().await;
}

// spec: PRO-31
#[tokio::test]
async fn describe_log_dirs_reports_partition_sizes() {
    use gregor_runtime::storage::record::{BatchBuilder, Codec};
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        DescribeLogDirsRequest, DescribeLogDirsResponse, ProduceRequest,
    };
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    assert_eq!(
        create(&mut c, 5, vec![creatable("sized", 2, 1)]).await[0].1,
        0
    );
    let mut batch = BatchBuilder::new(2, Codec::None, 0).unwrap();
    for i in 0..50 {
        batch
            .append(
                1_700_000_000_000,
                None,
                Some(format!("value-{i}").as_bytes()),
                &[],
            )
            .unwrap();
    }
    let records = bytes::Bytes::from(batch.build().unwrap());
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name("sized"))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records.clone())),
                ]),
        ]);
    let resp = c.call(9, 2, &produce).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    let sizes = |r: &DescribeLogDirsResponse| -> Vec<(i32, i64, i64)> {
        r.results[0]
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == "sized")
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.partition_size, p.offset_lag))
            .collect()
    };
    // v0 by hand (gone from the kafka-protocol crate): the v1 shape.
    let mut body = BytesMut::new();
    body.put_i32(-1);
    let mut r = c.call_raw(35, 0, 9, &body).await;
    assert_eq!((r.get_i32(), r.get_i32(), r.get_i16()), (0, 1, 0));
    assert_eq!(get_str(&mut r), b.dir.path().display().to_string());
    for v in 1..=4 {
        let resp = c
            .call(
                v,
                10 + i32::from(v),
                &DescribeLogDirsRequest::default().with_topics(None),
            )
            .await;
        assert_eq!(resp.results.len(), 1, "v{v}");
        let dir = &resp.results[0];
        assert_eq!(dir.error_code, 0);
        assert_eq!(dir.log_dir.as_str(), b.dir.path().display().to_string());
        assert_eq!(
            sizes(&resp),
            vec![(0, records.len() as i64, 0), (1, 0, 0)],
            "v{v}: partition 0 holds the batch, partition 1 nothing"
        );
        if v >= 4 {
            assert!(dir.total_bytes > 0 && dir.usable_bytes > 0, "{dir:?}");
            assert!(dir.usable_bytes <= dir.total_bytes);
        }
    }
    // Named partitions: only those this broker holds.
    let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
        DescribableLogDirTopic::default()
            .with_topic(name("sized"))
            .with_partitions(vec![1, 7]),
        DescribableLogDirTopic::default()
            .with_topic(name("absent"))
            .with_partitions(vec![0]),
    ]));
    let resp = c.call(2, 20, &req).await;
    assert_eq!(sizes(&resp), vec![(1, 0, 0)]);
    assert_eq!(resp.results[0].topics.len(), 1);
    b.stop().await;
}

// spec: PRO-33
#[tokio::test]
async fn elect_leaders_on_a_single_broker_needs_no_election() {
    use kafka_protocol::messages::ElectLeadersRequest;
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    assert_eq!(
        create(&mut c, 5, vec![creatable("led", 2, 1)]).await[0].1,
        0
    );
    for v in 0..=2 {
        let req = ElectLeadersRequest::default()
            .with_timeout_ms(5000)
            .with_topic_partitions(Some(vec![
                TopicPartitions::default()
                    .with_topic(name("led"))
                    .with_partitions(vec![1, 9]),
            ]));
        let resp = c.call(v, 10 + i32::from(v), &req).await;
        assert_eq!(resp.error_code, 0);
        let got: Vec<(i32, i16)> = resp.replica_election_results[0]
            .partition_result
            .iter()
            .map(|p| (p.partition_id, p.error_code))
            .collect();
        assert_eq!(
            got,
            vec![(1, 84), (9, 3)],
            "v{v}: ELECTION_NOT_NEEDED, unknown"
        );
        // Every partition: nothing to report.
        let all = ElectLeadersRequest::default().with_topic_partitions(None);
        let resp = c.call(v, 20 + i32::from(v), &all).await;
        assert!(resp.replica_election_results.is_empty(), "v{v}");
    }
    b.stop().await;
}

// spec: PRO-21
#[tokio::test]
async fn auto_creation_can_be_disabled() {
    let b = TestBroker::start(&[("auto.create.topics.enable", "false")]).await;
    let mut c = b.connect().await;
    let resp = c.call(1, 1, &metadata_for(&["nope"], true)).await;
    assert_eq!(partitions_of(&resp, "nope"), Some((3, 0)));
    b.stop().await;
}

// spec: PRO-22, PRO-62
#[tokio::test]
async fn create_topics_validates_and_survives_restart() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    let got = create(
        &mut c,
        5,
        vec![
            creatable("orders", 3, 1),
            creatable("bad/name", 1, 1),
            creatable("zero", 0, 1),
            creatable("rf2", 1, 2),
            creatable(&"x".repeat(250), 1, 1),
            creatable("defaults", -1, -1),
            creatable("cfg", 1, 1).with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("1000"))),
            ]),
            creatable("badcfg", 1, 1).with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("retention.msx"))
                    .with_value(Some(StrBytes::from_static_str("1"))),
            ]),
        ],
    )
    .await;
    let codes: Vec<i16> = got.iter().map(|(_, c)| *c).collect();
    assert_eq!(codes, vec![0, 17, 37, 38, 17, 0, 0, 40]);
    assert_eq!(
        create(&mut c, 2, vec![creatable("orders", 3, 1)]).await[0].1,
        36
    );
    // Duplicate names in one request: INVALID_REQUEST, answered once.
    let dup = create(&mut c, 4, vec![creatable("d", 1, 1), creatable("d", 1, 1)]).await;
    assert_eq!(dup, vec![("d".to_owned(), 42)]);
    // validate_only creates nothing.
    let req = CreateTopicsRequest::default()
        .with_topics(vec![creatable("dry", 2, 1)])
        .with_validate_only(true);
    assert_eq!(c.call(3, 9, &req).await.topics[0].error_code, 0);
    // v0 and v1 are encoded by hand (gone from newer Kafka releases).
    let mut body = BytesMut::new();
    body.put_i32(1);
    put_str(&mut body, "legacy");
    body.put_i32(2);
    body.put_i16(1);
    body.put_i32(0);
    body.put_i32(0);
    body.put_i32(5000);
    let mut r = c.call_raw(19, 0, 10, &body).await;
    assert_eq!(r.get_i32(), 1);
    assert_eq!(get_str(&mut r), "legacy");
    assert_eq!(r.get_i16(), 0);
    assert_eq!(r.remaining(), 0);
    body.put_u8(0); // v1: validate_only
    let mut r = c.call_raw(19, 1, 11, &body).await;
    r.get_i32();
    get_str(&mut r);
    assert_eq!(r.get_i16(), 36, "already exists");
    assert!(get_str(&mut r).contains("already exists"));

    let dir = b.stop().await;
    let b = TestBroker::start_in(dir, &[]).await;
    let mut c = b.connect().await;
    let resp = c
        .call(
            12,
            1,
            &metadata_for(&["orders", "legacy", "defaults", "dry"], false),
        )
        .await;
    assert_eq!(partitions_of(&resp, "orders"), Some((0, 3)));
    assert_eq!(partitions_of(&resp, "legacy"), Some((0, 2)));
    assert_eq!(partitions_of(&resp, "defaults"), Some((0, 1)));
    assert_eq!(partitions_of(&resp, "dry"), Some((3, 0)));
    b.stop().await;
}

// spec: PRO-23, PRO-24
#[tokio::test]
async fn delete_topics_and_create_partitions() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    create(&mut c, 5, vec![creatable("a", 1, 1), creatable("b", 1, 1)]).await;
    let req = CreatePartitionsRequest::default().with_topics(vec![
        CreatePartitionsTopic::default()
            .with_name(name("a"))
            .with_count(4),
        CreatePartitionsTopic::default()
            .with_name(name("b"))
            .with_count(1),
        CreatePartitionsTopic::default()
            .with_name(name("ghost"))
            .with_count(2),
    ]);
    let resp = c.call(3, 2, &req).await;
    let codes: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 37, 3]);
    let meta = c.call(9, 3, &metadata_for(&["a"], false)).await;
    assert_eq!(partitions_of(&meta, "a"), Some((0, 4)));

    let req = DeleteTopicsRequest::default().with_topic_names(vec![name("a"), name("ghost")]);
    let resp = c.call(4, 4, &req).await;
    let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 3]);
    // v0 by hand.
    let mut body = BytesMut::new();
    body.put_i32(1);
    put_str(&mut body, "b");
    body.put_i32(1000);
    let mut r = c.call_raw(20, 0, 5, &body).await;
    assert_eq!(r.get_i32(), 1);
    assert_eq!(get_str(&mut r), "b");
    assert_eq!(r.get_i16(), 0);
    let all = c
        .call(12, 6, &MetadataRequest::default().with_topics(None))
        .await;
    assert!(all.topics.is_empty());
    b.stop().await;
}

// spec: PRO-25
#[tokio::test]
async fn describe_configs_topic_and_broker() {
    let b = TestBroker::start(&[("log.retention.hours", "24")]).await;
    let mut c = b.connect().await;
    create(
        &mut c,
        5,
        vec![creatable("t", 1, 1).with_configs(vec![
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("cleanup.policy"))
                .with_value(Some(StrBytes::from_static_str("compact"))),
        ])],
    )
    .await;
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configuration_keys(None),
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("0"))
                .with_configuration_keys(Some(vec![StrBytes::from_static_str("num.partitions")])),
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("ghost")),
        ])
        .with_include_synonyms(true);
    for v in 1..=4 {
        let resp = c.call(v, 7, &req).await;
        let topic = &resp.results[0];
        assert_eq!(topic.error_code, 0);
        let get = |n: &str| {
            topic
                .configs
                .iter()
                .find(|e| e.name.as_str() == n)
                .map(|e| (e.value.as_ref().map(|v| v.to_string()), e.config_source))
        };
        assert_eq!(get("cleanup.policy"), Some((Some("compact".into()), 1)));
        assert_eq!(get("retention.ms"), Some((Some("86400000".into()), 4)));
        assert_eq!(get("segment.bytes"), Some((Some("1073741824".into()), 5)));
        let broker = &resp.results[1];
        assert_eq!(broker.configs.len(), 1);
        assert_eq!(broker.configs[0].value.as_deref(), Some("1"));
        assert_eq!(resp.results[2].error_code, 3);
    }
    // v0 by hand: is_default instead of a source.
    let mut body = BytesMut::new();
    body.put_i32(1);
    body.put_i8(2);
    put_str(&mut body, "t");
    body.put_i32(1);
    put_str(&mut body, "cleanup.policy");
    let mut r = c.call_raw(32, 0, 8, &body).await;
    assert_eq!(r.get_i32(), 0, "throttle");
    assert_eq!(r.get_i32(), 1);
    assert_eq!(r.get_i16(), 0);
    assert_eq!(r.get_i16(), -1, "null error message");
    assert_eq!(r.get_i8(), 2);
    assert_eq!(get_str(&mut r), "t");
    assert_eq!(r.get_i32(), 1);
    assert_eq!(get_str(&mut r), "cleanup.policy");
    assert_eq!(get_str(&mut r), "compact");
    assert_eq!((r.get_u8(), r.get_u8(), r.get_u8()), (0, 0, 0));
    b.stop().await;
}

fn incremental(
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> IncrementalResource {
    IncrementalResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.to_owned()))
        .with_configs(
            ops.iter()
                .map(|(k, op, v)| {
                    IncrementalConfig::default()
                        .with_name(StrBytes::from_string((*k).to_owned()))
                        .with_config_operation(*op)
                        .with_value(v.map(|v| StrBytes::from_string(v.to_owned())))
                })
                .collect(),
        )
}

/// (value, source) of every config of topic `t`.
async fn topic_configs(
    c: &mut Conn,
    t: &str,
) -> std::collections::BTreeMap<String, (Option<String>, i8)> {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(t.to_owned()))
            .with_configuration_keys(None),
    ]);
    let resp: DescribeConfigsResponse = c.call(4, 11, &req).await;
    resp.results[0]
        .configs
        .iter()
        .map(|e| {
            (
                e.name.to_string(),
                (e.value.as_ref().map(|v| v.to_string()), e.config_source),
            )
        })
        .collect()
}

// spec: PRO-27, STO-54
#[tokio::test]
async fn topic_configs_change_while_running_and_reach_the_logs() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.connect().await;
    create(
        &mut c,
        5,
        vec![creatable("t", 1, 1).with_configs(vec![
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("1000"))),
        ])],
    )
    .await;
    let tp = gregor_core::ids::TopicPartition::new("t", 0);
    assert_eq!(
        b.broker.partitions.log_config_of(&tp).unwrap().retention_ms,
        Some(1000)
    );
    // IncrementalAlterConfigs: SET, DELETE and APPEND on one topic; an
    // unknown topic, a broker resource and an unknown key are refused.
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental(
            2,
            "t",
            &[
                ("segment.bytes", 0, Some("100000")),
                ("retention.ms", 1, None),
                ("cleanup.policy", 2, Some("compact")),
            ],
        ),
        incremental(2, "ghost", &[("retention.ms", 0, Some("1"))]),
        incremental(4, "0", &[("num.partitions", 0, Some("2"))]),
    ]);
    for v in [1, 0] {
        let resp = c.call(v, 12, &req).await;
        let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, 3, 42], "v{v}");
    }
    let bad = IncrementalAlterConfigsRequest::default().with_resources(vec![incremental(
        2,
        "t",
        &[("retention.msx", 0, Some("1"))],
    )]);
    let resp = c.call(1, 13, &bad).await;
    assert_eq!(resp.responses[0].error_code, 40, "INVALID_CONFIG");
    assert!(
        resp.responses[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("retention.msx"))
    );
    let got = topic_configs(&mut c, "t").await;
    assert_eq!(got["segment.bytes"], (Some("100000".into()), 1));
    assert_eq!(got["cleanup.policy"], (Some("compact".into()), 1));
    assert_eq!(got["retention.ms"].1, 5, "back to the default");
    let log = b.broker.partitions.log_config_of(&tp).unwrap();
    assert_eq!(log.segment_bytes, 100_000);
    assert_eq!(log.retention_ms, None, "compact alone keeps everything");

    // AlterConfigs replaces the whole set (v0 non-flexible, v2 flexible).
    for (v, ms) in [(0, "5000"), (2, "6000")] {
        let req = AlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_string(ms.to_owned()))),
                ]),
        ]);
        let resp = c.call(v, 14, &req).await;
        assert_eq!(resp.responses[0].error_code, 0, "v{v}");
    }
    let got = topic_configs(&mut c, "t").await;
    assert_eq!(got["retention.ms"], (Some("6000".into()), 1));
    assert_eq!(got["segment.bytes"].1, 5, "not in the new set: default");
    assert_eq!(
        b.broker.partitions.log_config_of(&tp).unwrap().retention_ms,
        Some(6000)
    );
    // validate_only changes nothing.
    let dry = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![incremental(2, "t", &[("retention.ms", 0, Some("1"))])])
        .with_validate_only(true);
    assert_eq!(c.call(1, 15, &dry).await.responses[0].error_code, 0);
    assert_eq!(
        topic_configs(&mut c, "t").await["retention.ms"]
            .0
            .as_deref(),
        Some("6000")
    );

    // The change is kept across a restart, and the log opened from disk
    // uses it.
    drop(c);
    let dir = b.stop().await;
    let b = TestBroker::start_in(dir, &[]).await;
    let mut c = b.connect().await;
    assert_eq!(
        topic_configs(&mut c, "t").await["retention.ms"]
            .0
            .as_deref(),
        Some("6000")
    );
    assert_eq!(
        b.broker.partitions.log_config_of(&tp).unwrap().retention_ms,
        Some(6000)
    );
    b.stop().await;
}
