"""kafka-python driver for the end-to-end tests (same commands as
confluent.py). --api-version 0.10.1 forces the seed's protocol: Produce v2
with magic-1 messages, Fetch v3 (headers are not available there)."""

import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from common import GroupStop, Pacer, Rec, base_parser, emit, fail, parts, read_input, say


def version(a):
    if not a.api_version:
        return {}
    return {"api_version": tuple(int(x) for x in a.api_version.split("."))}


def produce(a):
    acks = {"all": "all", "-1": "all", "1": 1, "0": 0}[a.acks]
    kw = dict(bootstrap_servers=a.bootstrap, acks=acks, linger_ms=5,
              compression_type=None if a.compression == "none" else a.compression,
              request_timeout_ms=int(a.timeout * 1000), **version(a))
    if a.idempotence:
        kw["enable_idempotence"] = True
    if a.max_in_flight:
        kw["max_in_flight_requests_per_connection"] = a.max_in_flight
    p = KafkaProducer(**kw)
    recs = read_input(a.input)
    pacer = Pacer(a.rate, a.progress)
    futures = []
    done = [0]

    def on_ack(_md):
        done[0] += 1
        pacer.acked(done[0])

    for i, r in enumerate(recs):
        pacer.before_send(i)
        sk = {"key": r.key, "value": r.value}
        if r.headers:
            sk["headers"] = r.headers
        if r.partition >= 0:
            sk["partition"] = r.partition
        if r.timestamp >= 0:
            sk["timestamp_ms"] = r.timestamp
        futures.append((r, p.send(a.topic, **sk).add_callback(on_ack)))
        if a.sync:
            p.flush(a.timeout)
            futures[-1][1].get(a.timeout)
    p.flush(a.timeout)
    out = []
    for r, f in futures:
        md = f.get(a.timeout)
        out.append(Rec(md.partition, md.offset, md.timestamp if md.timestamp is not None else -1,
                       r.key, r.value, r.headers))
    pacer.acked(len(out), force=True)
    p.close(a.timeout)
    for r in out:
        emit(r)


def consumer(a):
    return KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", **version(a))


def consume(a):
    c = consumer(a)
    c.assign([TopicPartition(a.topic, p) for p in range(a.partitions)])
    c.seek_to_beginning()
    deadline = time.monotonic() + a.timeout
    n = 0
    while n < a.count and time.monotonic() < deadline:
        for _, msgs in c.poll(timeout_ms=500, max_records=5000).items():
            for m in msgs:
                emit(Rec(m.partition, m.offset, m.timestamp, m.key, m.value,
                         list(m.headers or [])))
                n += 1
    c.close()
    if n < a.count:
        fail("consumed %d of %d records within %ss" % (n, a.count, a.timeout))


def offsets_for_times(a):
    c = consumer(a)
    tp = TopicPartition(a.topic, a.partition)
    for ts in a.timestamp:
        res = c.offsets_for_times({tp: ts})
        print(-1 if res[tp] is None else res[tp].offset)
    c.close()


def delete_records(a):
    """DeleteRecords below --before in --partition; prints `low_watermark N`."""
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, **version(a))
    res = admin.delete_records({TopicPartition(a.topic, a.partition): a.before},
                               timeout_ms=int(a.timeout * 1000))
    for _, r in res.items():
        low = r["low_watermark"] if isinstance(r, dict) else r.low_watermark
        say("low_watermark %d" % low)
    admin.close()


def describe_log_dirs(a):
    """DescribeLogDirs of every broker; prints `logdir PATH TOTAL USABLE`
    and `partition TOPIC P SIZE LAG` lines."""
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, **version(a))
    for b in admin.describe_log_dirs():
        for d in b["log_dirs"]:
            say("logdir %s %d %d" % (d["log_dir"], d.get("total_bytes", -1),
                                     d.get("usable_bytes", -1)))
            for t in d["topics"]:
                for p in t["partitions"]:
                    say("partition %s %d %d %d" % (t["name"], p["partition_index"],
                                                   p["partition_size"], p["offset_lag"]))
    admin.close()


def reassign(a):
    """AlterPartitionReassignments of --partition to --replicas ('cancel':
    none); prints `reassign TOPIC P RESULT` (ok or the error's name)."""
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, **version(a))
    target = None if a.replicas == "cancel" else [int(b) for b in a.replicas.split(",")]
    res = admin.alter_partition_reassignments({TopicPartition(a.topic, a.partition): target},
                                              timeout_ms=int(a.timeout * 1000))
    for tp, err in sorted(res.items()):
        say("reassign %s %d %s" % (tp.topic, tp.partition,
                                   "ok" if err is None else err.__name__))
    admin.close()


def list_reassignments(a):
    """ListPartitionReassignments of every partition; prints
    `ongoing TOPIC P REPLICAS ADDING REMOVING`."""
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, **version(a))
    csv = lambda v: ",".join(str(b) for b in v) or "-"
    for tp, r in sorted(admin.list_partition_reassignments(timeout_ms=int(a.timeout * 1000)).items()):
        say("ongoing %s %d %s %s %s" % (tp.topic, tp.partition, csv(r["replicas"]),
                                        csv(r["adding_replicas"]), csv(r["removing_replicas"])))
    say("listed")
    admin.close()


def elect_leaders(a):
    """ElectLeaders (preferred) for --partition of --topic; prints
    `elect TOPIC P ERROR_CODE` for every partition answered."""
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, **version(a))
    resp = admin.elect_leaders(0, {a.topic: [a.partition]},
                               timeout_ms=int(a.timeout * 1000), raise_errors=False)
    for r in resp.replica_election_results:
        for p in r.partition_result:
            say("elect %s %d %d" % (r.topic, p.partition_id, p.error_code))
    admin.close()


def commit_offsets(a):
    """Commits offset --before for partitions 0..--partitions of --topic as
    --group without joining it (AdminClient.alter_group_offsets)."""
    from kafka.admin import KafkaAdminClient
    from kafka.structs import OffsetAndMetadata
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, **version(a))
    offsets = {TopicPartition(a.topic, p): OffsetAndMetadata(a.before, "", -1)
               for p in range(a.partitions)}
    for tp, err in sorted(admin.alter_group_offsets(a.group, offsets).items()):
        say("committed %s %d %s" % (tp.topic, tp.partition, err.__name__))
    admin.close()


def group_offsets(a):
    """Prints `offset TOPIC P OFFSET` for every committed offset of --group."""
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, **version(a))
    for tp, om in sorted(admin.list_group_offsets({a.group: None})[a.group].items()):
        say("offset %s %d %d" % (tp.topic, tp.partition, om.offset))
    say("listed")
    admin.close()


def delete_group_offsets(a):
    """OffsetDelete of --partition of --topic for --group; prints
    `deleted TOPIC P RESULT` (the error's name, NoError on success)."""
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, **version(a))
    res = admin.delete_group_offsets(a.group, [TopicPartition(a.topic, a.partition)])
    for tp, err in sorted(res.items()):
        say("deleted %s %d %s" % (tp.topic, tp.partition, err.__name__))
    admin.close()


def group_consume(a):
    """Subscribes as a member of --group; commits synchronously after every
    batch unless --auto-commit (same output as confluent.py)."""
    from kafka import ConsumerRebalanceListener

    c = KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=a.group,
                      enable_auto_commit=a.auto_commit, auto_commit_interval_ms=1000,
                      auto_offset_reset="earliest",
                      session_timeout_ms=a.session_timeout_ms,
                      heartbeat_interval_ms=max(100, a.session_timeout_ms // 6), **version(a))

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            say("revoke %s" % parts(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            say("assign %s" % parts(tp.partition for tp in assigned))

    # Learn the topic's partitions before joining: kafka-python's leader
    # assigns from its own metadata, and an early join can leave it with an
    # empty plan for a topic it has not seen yet.
    deadline = time.monotonic() + a.timeout
    while not c.partitions_for_topic(a.topic):
        if time.monotonic() > deadline:
            fail("no metadata for %s within %ss" % (a.topic, a.timeout))
        time.sleep(0.1)
    c.subscribe([a.topic], listener=Listener())
    stop = GroupStop(a)
    while not stop.done() and not stop.timed_out():
        batch = c.poll(timeout_ms=200, max_records=500)
        k = 0
        for _, msgs in batch.items():
            for m in msgs:
                emit(Rec(m.partition, m.offset, m.timestamp, m.key, m.value,
                         list(m.headers or [])))
                k += 1
        sys.stdout.flush()
        stop.got(k)
        if k and not a.auto_commit:
            offsets = {tp: c.position(tp) for tp in c.assignment()}
            c.commit()
            for tp, off in sorted(offsets.items()):
                say("commit %d %d" % (tp.partition, off))
    c.close(autocommit=a.auto_commit)
    stop.check()


def main():
    a = base_parser(__doc__).parse_args()
    try:
        {"produce": produce, "consume": consume,
         "offsets-for-times": offsets_for_times, "group-consume": group_consume,
         "delete-records": delete_records, "describe-log-dirs": describe_log_dirs,
         "reassign": reassign, "list-reassignments": list_reassignments,
         "elect-leaders": elect_leaders, "commit-offsets": commit_offsets,
         "group-offsets": group_offsets,
         "delete-group-offsets": delete_group_offsets}[a.command](a)
    except KafkaError as e:
        fail(repr(e))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
