"""confluent-kafka (librdkafka) driver for the end-to-end tests.

produce: sends every record of --input, prints each acknowledged record
(with partition, offset and timestamp) as a record line.
consume: reads --count records from the beginning of all --partitions
partitions (assign, no group management) and prints them.
offsets-for-times: prints the offset for --timestamp in --partition.
create-topic: creates --topic with --partitions partitions.
create-partitions: grows --topic to --partitions partitions.
delete-records: deletes the records of --partition below --before.
describe-cluster: prints the cluster id, the controller and the brokers.
group-consume: subscribes to --topic as a member of --group and prints the
records it receives; "# assign P,…" after each rebalance, "# revoke P,…",
"# commit P OFFSET" for every committed position (synchronous commit after
each batch and on revocation unless --auto-commit).
"""

import os
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import (GroupStop, Pacer, Rec, base_parser, emit, fail, parts, read_input,
                    say)


def produce(a):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "acks": a.acks,
        "compression.type": a.compression,
        "linger.ms": 5,
        "message.timeout.ms": int(a.timeout * 1000),
        "enable.idempotence": a.idempotence,
        "retry.backoff.ms": 100,
    }
    if a.max_in_flight:
        conf["max.in.flight.requests.per.connection"] = a.max_in_flight
    if os.environ.get("GREGOR_E2E_RDKAFKA_DEBUG"):
        conf["debug"] = os.environ["GREGOR_E2E_RDKAFKA_DEBUG"]
    p = Producer(conf)
    recs = read_input(a.input)
    acked = []
    errors = []
    pacer = Pacer(a.rate, a.progress)

    def on_delivery(err, msg, headers):
        if err is not None:
            errors.append("%s: %s" % (msg.key(), err))
            return
        # Delivery reports carry no headers: report the ones sent.
        acked.append(Rec(msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(),
                         msg.value(), headers))
        pacer.acked(len(acked))

    for i, r in enumerate(recs):
        pacer.before_send(i)
        kw = {"key": r.key, "value": r.value,
              "on_delivery": lambda err, msg, h=r.headers: on_delivery(err, msg, h)}
        if r.headers:
            kw["headers"] = r.headers
        if r.partition >= 0:
            kw["partition"] = r.partition
        if r.timestamp >= 0:
            kw["timestamp"] = r.timestamp
        while True:
            try:
                p.produce(a.topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(a.timeout)
    pacer.acked(len(acked), force=True)
    if not a.allow_errors:
        if errors:
            fail("%d delivery errors, first: %s" % (len(errors), errors[0]))
        if left:
            fail("%d records not delivered within %ss" % (left, a.timeout))
    elif errors:
        sys.stdout.write("# %d delivery errors, first: %s\n" % (len(errors), errors[0]))
    for r in acked:
        emit(r)


def consumer(a):
    # confluent-kafka insists on a group id even for assign-only consumers.
    return Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "gregor-e2e",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    })


def consume(a):
    c = consumer(a)
    c.assign([TopicPartition(a.topic, p, -2) for p in range(a.partitions)])
    import time
    deadline = time.monotonic() + a.timeout
    n = 0
    last = time.monotonic()
    while time.monotonic() < deadline:
        if n >= a.count and time.monotonic() - last >= a.idle:
            break
        for m in c.consume(1000, 0.2):
            if m.error():
                fail("consume error: %s" % m.error())
            emit(Rec(m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(),
                     list(m.headers() or [])))
            n += 1
            last = time.monotonic()
    c.close()
    if n < a.count:
        fail("consumed %d of %d records within %ss" % (n, a.count, a.timeout))


def offsets_for_times(a):
    c = consumer(a)
    for ts in a.timestamp:
        res = c.offsets_for_times([TopicPartition(a.topic, a.partition, ts)], a.timeout)
        if res[0].error:
            fail(str(res[0].error))
        print(res[0].offset)
    c.close()


def create_topic(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    fs = admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)])
    for _, f in fs.items():
        f.result(a.timeout)


def create_partitions(a):
    from confluent_kafka.admin import NewPartitions
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    fs = admin.create_partitions([NewPartitions(a.topic, a.partitions)])
    for _, f in fs.items():
        f.result(a.timeout)


def alter_config(a):
    """Sets topic configs with IncrementalAlterConfigs, then prints what
    DescribeConfigs reports for them: `config <key> <value> <source>`."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    entries = []
    for kv in a.config:
        k, v = kv.split("=", 1)
        entries.append(ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET))
    res = ConfigResource("topic", a.topic, incremental_configs=entries)
    for _, f in admin.incremental_alter_configs([res]).items():
        f.result(a.timeout)
    for _, f in admin.describe_configs([ConfigResource("topic", a.topic)]).items():
        got = f.result(a.timeout)
        for kv in a.config:
            k = kv.split("=", 1)[0]
            say("config %s %s %s" % (k, got[k].value, got[k].source))


def delete_records(a):
    """DeleteRecords below --before in --partition; prints `low_watermark N`."""
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    fs = admin.delete_records([TopicPartition(a.topic, a.partition, a.before)],
                              request_timeout=a.timeout)
    for _, f in fs.items():
        say("low_watermark %d" % f.result(a.timeout).low_watermark)


def describe_cluster(a):
    """DescribeCluster; prints `cluster ID`, `controller ID` and one
    `broker ID HOST:PORT RACK` line per broker."""
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    d = admin.describe_cluster(request_timeout=a.timeout).result(a.timeout)
    say("cluster %s" % d.cluster_id)
    say("controller %d" % (d.controller.id if d.controller else -1))
    for n in d.nodes:
        say("broker %d %s:%d %s" % (n.id, n.host, n.port, n.rack or "-"))


def group_consume(a):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "session.timeout.ms": a.session_timeout_ms,
        "heartbeat.interval.ms": max(100, a.session_timeout_ms // 6),
        "enable.auto.commit": a.auto_commit,
        "auto.commit.interval.ms": 1000,
        "auto.offset.reset": "earliest",
    }
    if a.metadata_refresh_ms:
        conf["topic.metadata.refresh.interval.ms"] = a.metadata_refresh_ms
    if os.environ.get("GREGOR_E2E_RDKAFKA_DEBUG"):
        conf["debug"] = os.environ["GREGOR_E2E_RDKAFKA_DEBUG"]
    owned = set()

    def commit(c):
        try:
            for tp in c.commit(asynchronous=False) or []:
                if tp.error is None and tp.offset >= 0:
                    say("commit %d %d" % (tp.partition, tp.offset))
        except KafkaException as e:
            # Nothing consumed since the last commit, or the group moved on.
            say("commit-failed %s" % e)

    def on_assign(c, tps):
        owned.update(tp.partition for tp in tps)
        say("assign %s" % parts(owned))

    def on_revoke(c, tps):
        if not a.auto_commit:
            commit(c)
        owned.difference_update(tp.partition for tp in tps)
        say("revoke %s" % parts(tp.partition for tp in tps))

    c = Consumer(conf)
    c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke)
    stop = GroupStop(a)
    while not stop.done() and not stop.timed_out():
        msgs = c.consume(500, 0.2)
        for m in msgs:
            if m.error():
                fail("consume error: %s" % m.error())
            emit(Rec(m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(),
                     list(m.headers() or [])))
        sys.stdout.flush()
        stop.got(len(msgs))
        if msgs and not a.auto_commit:
            commit(c)
    c.close()
    stop.check()


def main():
    a = base_parser(__doc__).parse_args()
    try:
        {"produce": produce, "consume": consume, "offsets-for-times": offsets_for_times,
         "create-topic": create_topic, "create-partitions": create_partitions,
         "group-consume": group_consume, "alter-config": alter_config,
         "delete-records": delete_records, "describe-cluster": describe_cluster}[a.command](a)
    except KafkaException as e:
        fail(str(e))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
