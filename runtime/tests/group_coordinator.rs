//! The runtime group coordinator over TCP: FindCoordinator, a two-member
//! rebalance through JoinGroup/SyncGroup/Heartbeat, offset commits and
//! fetches, offsets surviving a broker restart, and the admin APIs
//! (spec: GRP-100..GRP-107).

mod protocol_support;

use bytes::Bytes;
use gregor_core::partitioner::coordinator_partition;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiVersionsRequest, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, ListOffsetsRequest};
use kafka_protocol::protocol::StrBytes;
use protocol_support::{Conn, TestBroker};

/// Few offsets partitions keep the tests fast (creating and flushing 50
/// logs costs seconds on a loaded machine); no initial rebalance delay.
const NO_DELAY: &[(&str, &str)] = &[
    ("group.initial.rebalance.delay.ms", "0"),
    ("offsets.topic.num.partitions", "4"),
];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn join_request(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"sub")),
        ])
}

/// Joins at v5: the first attempt gets MEMBER_ID_REQUIRED and an id, the
/// second is held until the rebalance completes.
async fn join(conn: &mut Conn, group: &str, member: &str) -> JoinGroupResponse {
    let resp = conn.call(5, 1, &join_request(group, member)).await;
    if member.is_empty() {
        // spec: GRP-11 — a first join from v4 must come back with an id.
        assert_eq!(resp.error_code, 79, "MEMBER_ID_REQUIRED");
        assert!(!resp.member_id.is_empty());
        let id = resp.member_id.to_string();
        return conn.call(5, 2, &join_request(group, &id)).await;
    }
    resp
}

async fn sync(
    conn: &mut Conn,
    group: &str,
    generation: i32,
    member: &str,
    plan: &[(&str, &'static [u8])],
) -> (i16, Bytes) {
    let req = SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            plan.iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from_static(a))
                })
                .collect(),
        );
    let resp = conn.call(3, 3, &req).await;
    (resp.error_code, resp.assignment)
}

async fn heartbeat(conn: &mut Conn, group: &str, generation: i32, member: &str) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member));
    conn.call(3, 4, &req).await.error_code
}

async fn commit(
    conn: &mut Conn,
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|&(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_metadata(Some(s("m")))
                        })
                        .collect(),
                ),
        ]);
    let resp = conn.call(7, 5, &req).await;
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// Committed offsets of topic `t` partitions 0..3 through OffsetFetch v5.
async fn fetch(conn: &mut Conn, group: &str) -> Vec<i64> {
    let req = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0, 1, 2]),
        ]));
    let resp = conn.call(5, 6, &req).await;
    assert_eq!(resp.error_code, 0);
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

/// Creates topic `t` with three partitions, the one the tests commit to.
async fn create_t(conn: &mut Conn) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(s("t")))
                .with_num_partitions(3)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(5_000);
    let resp = conn.call(4, 90, &req).await;
    assert_eq!(resp.topics[0].error_code, 0);
}

/// The log end offset of one `__consumer_offsets` partition.
async fn offsets_log_end(conn: &mut Conn, partition: i32) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(s("__consumer_offsets")))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(-1),
                ]),
        ]);
    let resp = conn.call(1, 50, &req).await;
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

#[tokio::test]
async fn find_coordinator_names_this_broker_in_every_version() {
    // spec: GRP-101, GRP-106
    let broker = TestBroker::start(&[("offsets.topic.num.partitions", "4")]).await;
    let mut c = broker.connect().await;
    let versions = c.call(3, 1, &ApiVersionsRequest::default()).await;
    for key in [8i16, 9, 10, 11, 12, 13, 14, 15, 16, 42] {
        let row = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key)
            .unwrap_or_else(|| panic!("api {key} advertised"));
        assert_eq!(row.min_version, 0, "api {key} starts at version 0");
    }
    for v in 0..=3 {
        let req = FindCoordinatorRequest::default().with_key(s("g1"));
        let resp = c.call(v, 10 + i32::from(v), &req).await;
        assert_eq!(resp.error_code, 0, "v{v}");
        assert_eq!(resp.node_id.0, 0);
        assert_eq!(resp.port, i32::from(broker.addr.port()));
    }
    let req = FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]);
    let resp = c.call(4, 20, &req).await;
    assert_eq!(resp.coordinators.len(), 2);
    assert!(
        resp.coordinators
            .iter()
            .all(|k| k.error_code == 0 && k.port == i32::from(broker.addr.port()))
    );
    broker.stop().await;
}

#[tokio::test]
async fn two_members_rebalance_and_share_the_leaders_plan() {
    // spec: GRP-103, GRP-105
    let broker = TestBroker::start(NO_DELAY).await;
    let (mut a, mut b) = (broker.connect().await, broker.connect().await);
    create_t(&mut a).await;
    let first = join(&mut a, "g", "").await;
    assert_eq!(first.error_code, 0);
    assert_eq!(first.generation_id, 1);
    let a_id = first.member_id.to_string();
    assert_eq!(first.leader.to_string(), a_id);
    let (err, got) = sync(&mut a, "g", 1, &a_id, &[(&a_id, b"all")]).await;
    assert_eq!((err, &got[..]), (0, &b"all"[..]));
    assert_eq!(heartbeat(&mut a, "g", 1, &a_id).await, 0);

    // B's join is held until A rejoins.
    let b_join = tokio::spawn(async move {
        let resp = join(&mut b, "g", "").await;
        (b, resp)
    });
    let mut rebalancing = false;
    for _ in 0..50 {
        if heartbeat(&mut a, "g", 1, &a_id).await == 27 {
            rebalancing = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(rebalancing, "A hears REBALANCE_IN_PROGRESS");
    assert!(!b_join.is_finished(), "B waits for the rebalance");
    let second = join(&mut a, "g", &a_id).await;
    let (mut b, b_resp) = b_join.await.unwrap();
    assert_eq!(second.error_code, 0);
    assert_eq!(b_resp.error_code, 0);
    assert_eq!(second.generation_id, 2);
    assert_eq!(b_resp.generation_id, 2);
    assert_eq!(second.members.len(), 2, "the leader sees both members");
    assert!(b_resp.members.is_empty(), "followers see no members");
    let b_id = b_resp.member_id.to_string();

    // B's sync waits for the leader's plan.
    let b_sync = {
        let b_id = b_id.clone();
        tokio::spawn(async move {
            let out = sync(&mut b, "g", 2, &b_id, &[]).await;
            (b, out)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (err, got) = sync(&mut a, "g", 2, &a_id, &[(&a_id, b"p0"), (&b_id, b"p1")]).await;
    assert_eq!((err, &got[..]), (0, &b"p0"[..]));
    let (mut b, (err, got)) = b_sync.await.unwrap();
    assert_eq!((err, &got[..]), (0, &b"p1"[..]));
    assert_eq!(heartbeat(&mut a, "g", 2, &a_id).await, 0);
    assert_eq!(heartbeat(&mut b, "g", 2, &b_id).await, 0);
    assert_eq!(
        heartbeat(&mut b, "g", 1, &b_id).await,
        22,
        "ILLEGAL_GENERATION"
    );

    // A member commit is fenced by generation.
    assert_eq!(commit(&mut a, "g", 2, &a_id, &[(0, 5)]).await, vec![0]);
    assert_eq!(commit(&mut a, "g", 1, &a_id, &[(0, 9)]).await, vec![22]);
    assert_eq!(fetch(&mut b, "g").await, vec![5, -1, -1]);

    // Describe and list show the stable group; delete refuses it.
    let desc = b
        .call(
            5,
            30,
            &DescribeGroupsRequest::default().with_groups(vec![gid("g"), gid("nope")]),
        )
        .await;
    assert_eq!(desc.groups[0].group_state.as_str(), "Stable");
    assert_eq!(desc.groups[0].members.len(), 2);
    assert_eq!(desc.groups[1].group_state.as_str(), "Dead");
    let list = b.call(4, 31, &ListGroupsRequest::default()).await;
    assert_eq!(list.groups.len(), 1);
    assert_eq!(list.groups[0].group_state.as_str(), "Stable");
    let del = b
        .call(
            2,
            32,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid("g"), gid("nope")]),
        )
        .await;
    assert_eq!(del.results[0].error_code, 68, "NON_EMPTY_GROUP");
    assert_eq!(del.results[1].error_code, 69, "GROUP_ID_NOT_FOUND");

    // Both leave; the group is empty and can be deleted with its offsets.
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("g"))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(&a_id)),
            MemberIdentity::default().with_member_id(s(&b_id)),
        ]);
    let left = b.call(3, 33, &leave).await;
    assert_eq!(left.error_code, 0);
    assert!(left.members.iter().all(|m| m.error_code == 0));
    let del = b
        .call(
            2,
            34,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid("g")]),
        )
        .await;
    assert_eq!(del.results[0].error_code, 0);
    assert_eq!(fetch(&mut b, "g").await, vec![-1, -1, -1]);
    let list = b.call(4, 35, &ListGroupsRequest::default()).await;
    assert!(list.groups.is_empty());
    broker.stop().await;
}

#[tokio::test]
async fn committed_offsets_survive_a_broker_restart() {
    // spec: GRP-44, GRP-102, GRP-104
    let broker = TestBroker::start(NO_DELAY).await;
    let mut c = broker.connect().await;
    create_t(&mut c).await;
    // A simple commit: no generation, no member (assign-only consumers).
    // spec: GRP-110 — a partition the broker lacks is refused on its own.
    assert_eq!(
        commit(&mut c, "simple", -1, "", &[(0, 10), (5, 1), (2, 30)]).await,
        vec![0, 3, 0]
    );
    assert_eq!(commit(&mut c, "simple", -1, "", &[(0, 11)]).await, vec![0]);
    assert_eq!(commit(&mut c, "other", -1, "", &[(1, 7)]).await, vec![0]);
    assert_eq!(fetch(&mut c, "simple").await, vec![11, -1, 30]);
    // spec: GRP-101, GRP-102 — three commits of "simple", one batch each,
    // in its own offsets partition.
    let home = coordinator_partition("simple", 4);
    assert_eq!(offsets_log_end(&mut c, home).await, 3);
    drop(c);
    let dir = broker.stop().await;

    let broker = TestBroker::start_in(dir, NO_DELAY).await;
    let mut c = broker.connect().await;
    assert_eq!(fetch(&mut c, "simple").await, vec![11, -1, 30]);
    assert_eq!(fetch(&mut c, "other").await, vec![-1, 7, -1]);
    // v8: several groups at once, and "every partition" (null topics).
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("simple"))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("other"))
            .with_topics(Some(vec![
                OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![1]),
            ])),
    ]);
    let resp = c.call(8, 40, &req).await;
    let simple: Vec<(i32, i64)> = resp.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(simple, vec![(0, 11), (2, 30)]);
    assert_eq!(resp.groups[1].topics[0].partitions[0].committed_offset, 7);
    let list = c.call(2, 41, &ListGroupsRequest::default()).await;
    let mut names: Vec<String> = list
        .groups
        .iter()
        .map(|g| g.group_id.0.to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["other", "simple"]);
    broker.stop().await;
}

#[tokio::test]
async fn a_silent_member_expires_on_the_timer() {
    // spec: GRP-105, GRP-108
    let broker = TestBroker::start(&[
        ("group.initial.rebalance.delay.ms", "0"),
        ("group.min.session.timeout.ms", "100"),
        ("offsets.topic.num.partitions", "4"),
    ])
    .await;
    let mut c = broker.connect().await;
    create_t(&mut c).await;
    let req = join_request("quiet", "").with_session_timeout_ms(400);
    let first = c.call(3, 1, &req).await;
    assert_eq!(first.error_code, 0, "v3 joins without MEMBER_ID_REQUIRED");
    let id = first.member_id.to_string();
    let (err, _) = sync(&mut c, "quiet", 1, &id, &[(&id, b"x")]).await;
    assert_eq!(err, 0);
    assert_eq!(commit(&mut c, "quiet", 1, &id, &[(1, 3)]).await, vec![0]);
    let list = c.call(4, 2, &ListGroupsRequest::default()).await;
    assert_eq!(list.groups[0].group_state.as_str(), "Stable");
    // No heartbeats for longer than the session: the timer removes it and
    // the group is left empty (polled without heartbeats, which would
    // keep the member).
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    for n in 10.. {
        let list = c.call(4, n, &ListGroupsRequest::default()).await;
        if list.groups[0].group_state.as_str() == "Empty" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the member's session never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        heartbeat(&mut c, "quiet", 1, &id).await,
        25,
        "UNKNOWN_MEMBER_ID"
    );
    let list = c.call(4, 3, &ListGroupsRequest::default()).await;
    assert_eq!(list.groups.len(), 1, "kept for its offsets");
    assert_eq!(list.groups[0].group_state.as_str(), "Empty");
    assert_eq!(fetch(&mut c, "quiet").await, vec![-1, 3, -1]);
    // A group that never held anything is not remembered.
    assert_eq!(heartbeat(&mut c, "ghost", 1, "m").await, 25);
    let list = c.call(4, 4, &ListGroupsRequest::default()).await;
    assert_eq!(list.groups.len(), 1);
    broker.stop().await;
}

#[tokio::test]
async fn foreign_records_in_the_offsets_topic_do_not_stop_a_restart() {
    // spec: GRP-104 — undecodable records are skipped on replay.
    use gregor_core::ids::TopicPartition;
    use gregor_runtime::storage::config::LogConfig;
    use gregor_runtime::storage::manager::LogManager;
    use gregor_runtime::storage::record::{BatchBuilder, Codec};

    let broker = TestBroker::start(NO_DELAY).await;
    let mut c = broker.connect().await;
    create_t(&mut c).await;
    assert_eq!(commit(&mut c, "keep", -1, "", &[(0, 42)]).await, vec![0]);
    assert_eq!(commit(&mut c, "keep", -1, "", &[(1, 43)]).await, vec![0]);
    drop(c);
    let dir = broker.stop().await;

    // Clients cannot produce to the offsets topic (PRO-83), so the foreign
    // records are written straight into its log while the broker is down.
    let home = coordinator_partition("keep", 4);
    let tp = TopicPartition::new("__consumer_offsets", home);
    let dirs = vec![dir.path().to_path_buf()];
    let mut logs = LogManager::open(&dirs, 0, LogConfig::default(), 0).unwrap();
    let log = logs.get_mut(&tp).expect("the offsets partition exists");
    let mut junk = BatchBuilder::new(2, Codec::None, log.log_end()).unwrap();
    junk.append(0, Some(b"not a key"), Some(b"not a value"), &[])
        .unwrap();
    junk.append(0, None, None, &[]).unwrap();
    log.append(&junk.build().unwrap(), 0).unwrap();
    logs.shutdown(0).unwrap();

    let broker = TestBroker::start_in(dir, NO_DELAY).await;
    let mut c = broker.connect().await;
    assert_eq!(fetch(&mut c, "keep").await, vec![42, 43, -1]);
    broker.stop().await;
}

#[tokio::test]
async fn oldest_and_flexible_versions_decode_and_encode() {
    // spec: GRP-106, GRP-109
    use bytes::{Buf, BufMut, BytesMut};
    use protocol_support::{get_str, put_str};

    let broker = TestBroker::start(NO_DELAY).await;
    let mut c = broker.connect().await;
    create_t(&mut c).await;
    // JoinGroup v0 (no rebalance timeout, no MEMBER_ID_REQUIRED), SyncGroup
    // v0, Heartbeat v0.
    let joined = c.call(0, 1, &join_request("old", "")).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    let id = joined.member_id.to_string();
    let req = SyncGroupRequest::default()
        .with_group_id(gid("old"))
        .with_generation_id(1)
        .with_member_id(s(&id))
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(s(&id))
                .with_assignment(Bytes::from_static(b"plan")),
        ]);
    let synced = c.call(0, 2, &req).await;
    assert_eq!(
        (synced.error_code, &synced.assignment[..]),
        (0, &b"plan"[..])
    );
    let hb = HeartbeatRequest::default()
        .with_group_id(gid("old"))
        .with_generation_id(1)
        .with_member_id(s(&id));
    assert_eq!(c.call(0, 3, &hb).await.error_code, 0);
    assert_eq!(c.call(4, 4, &hb).await.error_code, 0, "flexible v4");

    // OffsetCommit v1 (member commit with a timestamp) and v0 (simple).
    let mut body = BytesMut::new();
    put_str(&mut body, "old");
    body.put_i32(1);
    put_str(&mut body, &id);
    body.put_i32(1);
    put_str(&mut body, "t");
    body.put_i32(1);
    body.put_i32(0);
    body.put_i64(17);
    body.put_i64(-1);
    put_str(&mut body, "meta");
    let mut resp = c.call_raw(8, 1, 5, &body).await;
    assert_eq!(resp.get_i32(), 1);
    assert_eq!(get_str(&mut resp), "t");
    assert_eq!(resp.get_i32(), 1);
    assert_eq!((resp.get_i32(), resp.get_i16()), (0, 0));
    assert_eq!(resp.remaining(), 0);

    let mut body = BytesMut::new();
    put_str(&mut body, "simple0");
    body.put_i32(1);
    put_str(&mut body, "t");
    body.put_i32(1);
    body.put_i32(2);
    body.put_i64(99);
    body.put_i16(-1);
    let mut resp = c.call_raw(8, 0, 6, &body).await;
    resp.advance(4);
    assert_eq!(get_str(&mut resp), "t");
    resp.advance(4);
    assert_eq!((resp.get_i32(), resp.get_i16()), (2, 0));

    // OffsetFetch v0 reads both back.
    for (group, partition, offset, meta) in [("old", 0, 17, "meta"), ("simple0", 2, 99, "")] {
        let mut body = BytesMut::new();
        put_str(&mut body, group);
        body.put_i32(1);
        put_str(&mut body, "t");
        body.put_i32(1);
        body.put_i32(partition);
        let mut resp = c.call_raw(9, 0, 7, &body).await;
        assert_eq!(resp.get_i32(), 1);
        assert_eq!(get_str(&mut resp), "t");
        assert_eq!(resp.get_i32(), 1);
        assert_eq!(resp.get_i32(), partition);
        assert_eq!(resp.get_i64(), offset, "{group}");
        assert_eq!(get_str(&mut resp), meta);
        assert_eq!(resp.get_i16(), 0);
        assert_eq!(resp.remaining(), 0);
    }

    // Flexible versions: JoinGroup v7 rejoin, SyncGroup v5, OffsetCommit
    // v8, OffsetFetch v7, LeaveGroup v4.
    let rejoin = c.call(7, 8, &join_request("old", &id)).await;
    assert_eq!(rejoin.error_code, 0);
    assert_eq!(rejoin.protocol_type.as_deref(), Some("consumer"));
    let gen2 = rejoin.generation_id;
    let req = SyncGroupRequest::default()
        .with_group_id(gid("old"))
        .with_generation_id(gen2)
        .with_member_id(s(&id))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(s(&id))
                .with_assignment(Bytes::from_static(b"p2")),
        ]);
    let synced = c.call(5, 9, &req).await;
    assert_eq!((synced.error_code, &synced.assignment[..]), (0, &b"p2"[..]));
    assert_eq!(synced.protocol_name.as_deref(), Some("range"));
    let req = OffsetCommitRequest::default()
        .with_group_id(gid("old"))
        .with_generation_id_or_member_epoch(gen2)
        .with_member_id(s(&id))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(1)
                        .with_committed_offset(23)
                        .with_committed_leader_epoch(4),
                ]),
        ]);
    let committed = c.call(8, 10, &req).await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let req = OffsetFetchRequest::default()
        .with_group_id(gid("old"))
        .with_topics(None);
    let fetched = c.call(7, 11, &req).await;
    let got: Vec<(i32, i64, i32)> = fetched.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.committed_offset,
                p.committed_leader_epoch,
            )
        })
        .collect();
    assert_eq!(got, vec![(0, 17, -1), (1, 23, 4)]);
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("old"))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&id))]);
    assert_eq!(c.call(4, 12, &leave).await.error_code, 0);
    // LeaveGroup v0 of a member that is gone.
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("old"))
        .with_member_id(s(&id));
    assert_eq!(c.call(0, 13, &leave).await.error_code, 25);
    broker.stop().await;
}
