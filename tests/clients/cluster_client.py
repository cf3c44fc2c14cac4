"""confluent-kafka (librdkafka) driver for the cluster fault tests.

produce: a long-running idempotent acks=all producer. Sends keyed records
(key ``key-NNNNNNNN``, header ``seq``, numbered from --first) at --rate per
second until --stop-file exists (or --count records are sent), then flushes
and exits. Every *acknowledged* record is
printed as a record line (see common.py) as soon as its delivery report
arrives; the timestamp column holds the wall-clock time of the
acknowledgement in ms (not the record's timestamp). Delivery errors are
printed as "# error KEY ERROR" lines and do not stop the producer.

consume: reads every partition of --topic from the beginning (assign, no
group) and prints each record as a record line. Once --stop-file exists it
holds the targets ``P=OFFSET`` (comma-separated, OFFSET the next offset to
reach); the consumer exits when its position in every partition reaches its
target, --drain seconds after the file appeared, or after --timeout seconds
in total, whichever comes first (the checker then names what is missing).

metadata: prints the cluster as the brokers describe it (Metadata):
``controller ID``, ``broker ID HOST PORT`` and, for --topic (or every topic
when --topic is ``*``), ``partition TOPIC P LEADER REPLICAS ISR`` with the
replica lists comma-separated (``-`` when empty).

coordinator: prints ``coordinator ID`` for --group (FindCoordinator, through
DescribeGroups).

create-topic: creates --topic with --partitions partitions, replication
factor --replication-factor and min.insync.replicas --min-insync.
"""

import argparse
import os
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import Rec, emit, fail


def parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("command", choices=["produce", "consume", "metadata", "coordinator",
                                        "create-topic"])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", default="*")
    p.add_argument("--group")
    p.add_argument("--stop-file")
    p.add_argument("--rate", type=float, default=200.0, help="produce: records per second")
    p.add_argument("--count", type=int, default=0,
                   help="produce: stop after sending this many records (0: until --stop-file)")
    p.add_argument("--first", type=int, default=0, help="produce: sequence number of the first record")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--replication-factor", type=int, default=3)
    p.add_argument("--min-insync", type=int, default=2)
    p.add_argument("--no-retries", action="store_true",
                   help="produce: not idempotent and no retries, so a broker's refusal is reported as is")
    p.add_argument("--drain", type=float, default=30.0,
                   help="consume: seconds to reach the targets once --stop-file exists")
    return p


def debug(conf):
    if os.environ.get("GREGOR_E2E_RDKAFKA_DEBUG"):
        conf["debug"] = os.environ["GREGOR_E2E_RDKAFKA_DEBUG"]
    return conf


def note(line):
    sys.stdout.write("# " + line + "\n")


def produce(a):
    conf = debug({
        "bootstrap.servers": a.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        # Long enough that no record times out during a fault: a timed-out
        # in-flight record would make librdkafka bump the producer epoch.
        "message.timeout.ms": int(a.timeout * 1000),
        "retry.backoff.ms": 100,
        # A frozen or cut-off leader answers nothing: give up on a request
        # (and retry it elsewhere after a metadata refresh) after 10 s.
        "request.timeout.ms": 10000,
        "topic.metadata.refresh.interval.ms": 1000,
    })

    def on_error(err):
        note("client-error %s" % err)
        if err.fatal():
            sys.stdout.flush()
            fail("fatal producer error: %s" % err)

    if a.no_retries:
        conf["enable.idempotence"] = False
        conf["retries"] = 0
    conf["error_cb"] = on_error
    if not a.stop_file:
        fail("produce needs --stop-file")
    p = Producer(conf)

    def on_delivery(err, msg, headers):
        if err is not None:
            note("error %s %s" % (msg.key().decode(), err))
            return
        emit(Rec(msg.partition(), msg.offset(), int(time.time() * 1000), msg.key(),
                 msg.value(), headers))

    start = time.monotonic()
    i = 0
    while not os.path.exists(a.stop_file) and (a.count == 0 or i < a.count):
        due = start + i / a.rate
        now = time.monotonic()
        if due > now:
            p.poll(due - now)
            sys.stdout.flush()
            continue
        n = a.first + i
        key = b"key-%08d" % n
        value = b"value-%08d-" % n + b"x" * (n % 41)
        headers = [("seq", str(n).encode())]
        while True:
            try:
                p.produce(a.topic, key=key, value=value, headers=headers,
                          on_delivery=lambda err, msg, h=headers: on_delivery(err, msg, h))
                break
            except BufferError:
                p.poll(0.05)
        i += 1
        p.poll(0)
    # Past message.timeout.ms: every record is either acknowledged or failed.
    left = p.flush(a.timeout + 10)
    note("sent %d, undelivered %d" % (i, left))
    sys.stdout.flush()


def targets(path):
    with open(path) as f:
        text = f.read().strip()
    out = {}
    for item in filter(None, text.split(",")):
        part, off = item.split("=")
        out[int(part)] = int(off)
    return out


def consume(a):
    c = Consumer(debug({
        "bootstrap.servers": a.bootstrap,
        "group.id": "gregor-e2e-cluster",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
        "error_cb": lambda err: note("client-error %s" % err),
    }))
    deadline = time.monotonic() + a.timeout
    md = None
    while md is None:
        try:
            md = c.list_topics(a.topic, timeout=5).topics.get(a.topic)
            if md is not None and (md.error is not None or not md.partitions):
                md = None
        except KafkaException as e:
            note("metadata-error %s" % e)
        if md is None:
            if time.monotonic() > deadline:
                fail("no metadata for %s within %ss" % (a.topic, a.timeout))
            time.sleep(0.2)
    parts = sorted(md.partitions)
    c.assign([TopicPartition(a.topic, p, -2) for p in parts])
    position = {p: 0 for p in parts}
    want = None
    while time.monotonic() < deadline:
        if want is None and a.stop_file and os.path.exists(a.stop_file):
            want = targets(a.stop_file)
            deadline = min(deadline, time.monotonic() + a.drain)
        if want is not None and all(position.get(p, 0) >= o for p, o in want.items()):
            break
        for m in c.consume(500, 0.2):
            if m.error():
                note("consume-error %s" % m.error())
                continue
            emit(Rec(m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(),
                     list(m.headers() or [])))
            position[m.partition()] = m.offset() + 1
        sys.stdout.flush()
    note("positions %s" % ",".join("%d=%d" % kv for kv in sorted(position.items())))
    c.close()


def ids(v):
    return ",".join(str(x) for x in v) or "-"


def metadata(a):
    # Asking about a missing topic must not create it.
    admin = AdminClient(debug({"bootstrap.servers": a.bootstrap,
                               "allow.auto.create.topics": False}))
    md = admin.list_topics(None if a.topic == "*" else a.topic, timeout=a.timeout)
    print("controller %d" % md.controller_id)
    for b in sorted(md.brokers.values(), key=lambda b: b.id):
        print("broker %d %s %d" % (b.id, b.host, b.port))
    for name in sorted(md.topics):
        t = md.topics[name]
        if t.error is not None:
            print("topic-error %s %s" % (name, t.error))
            continue
        for pid in sorted(t.partitions):
            p = t.partitions[pid]
            print("partition %s %d %d %s %s" % (name, pid, p.leader, ids(p.replicas),
                                                ids(p.isrs)))


def coordinator(a):
    admin = AdminClient(debug({"bootstrap.servers": a.bootstrap}))
    fs = admin.describe_consumer_groups([a.group], request_timeout=a.timeout)
    desc = fs[a.group].result(a.timeout)
    print("coordinator %d" % desc.coordinator.id)


def create_topic(a):
    admin = AdminClient(debug({"bootstrap.servers": a.bootstrap}))
    fs = admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions,
                                       replication_factor=a.replication_factor,
                                       config={"min.insync.replicas": str(a.min_insync)})],
                             request_timeout=a.timeout)
    for _, f in fs.items():
        f.result(a.timeout)


def main():
    a = parser().parse_args()
    try:
        {"produce": produce, "consume": consume, "metadata": metadata,
         "coordinator": coordinator, "create-topic": create_topic}[a.command](a)
    except KafkaException as e:
        fail(str(e))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
