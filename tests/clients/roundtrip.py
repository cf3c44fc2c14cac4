"""Produce N keyed records with headers through one real Kafka client, then
read the topic back and check every record: key, value, headers, partition,
and per-partition order.

usage: roundtrip.py PRODUCER CONSUMER BOOTSTRAP TOPIC N [CODEC] [--legacy]
       roundtrip.py count CONSUMER BOOTSTRAP TOPIC [--legacy]

PRODUCER: confluent | kafka-python | aiokafka
CONSUMER: confluent | kafka-python | aiokafka
CODEC:    none | gzip | snappy | lz4 | zstd
--legacy: kafka-python speaks the 0.10.1 protocol (v1 messages, Produce v2,
          Fetch v3), the seed's format; headers are not sent then.
Exits 0 when everything matches; prints what differs otherwise.
"""
import asyncio
import sys
import time


def records(client, n, headers=True):
    for i in range(n):
        key = f"{client}-key-{i}".encode()
        value = f"{client}-value-{i}-".encode() + bytes([i % 251]) * (i % 97)
        hdrs = [("i", str(i).encode()), ("client", client.encode())] if headers else []
        yield i, key, value, hdrs


def produce_confluent(bootstrap, topic, n, codec):
    from confluent_kafka import Producer

    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "compression.type": codec,
        "linger.ms": 5,
    })
    placed = {}
    errors = []

    def report(i):
        def cb(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                placed[i] = (msg.partition(), msg.offset())
        return cb

    for i, key, value, hdrs in records("confluent", n):
        while True:
            try:
                p.produce(topic, key=key, value=value, headers=hdrs, on_delivery=report(i))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(60)
    assert left == 0 and not errors, f"confluent produce: {left} left, errors {errors[:3]}"
    return "confluent", placed


def produce_kafka_python(bootstrap, topic, n, codec, legacy):
    from kafka import KafkaProducer

    kw = {"bootstrap_servers": bootstrap, "linger_ms": 5}
    if codec != "none":
        kw["compression_type"] = codec
    if legacy:
        kw["api_version"] = (0, 10, 1)
    p = KafkaProducer(**kw)
    futures = {}
    name = "kafka-python-legacy" if legacy else "kafka-python"
    for i, key, value, hdrs in records(name, n, headers=not legacy):
        futures[i] = p.send(topic, key=key, value=value, headers=hdrs or None)
    p.flush(60)
    placed = {}
    for i, f in futures.items():
        md = f.get(timeout=60)
        placed[i] = (md.partition, md.offset)
    p.close()
    return name, placed


def produce_aiokafka(bootstrap, topic, n, codec):
    from aiokafka import AIOKafkaProducer

    async def run():
        kw = {"bootstrap_servers": bootstrap, "linger_ms": 5}
        if codec != "none":
            kw["compression_type"] = codec
        p = AIOKafkaProducer(**kw)
        await p.start()
        try:
            futs = {}
            for i, key, value, hdrs in records("aiokafka", n):
                futs[i] = await p.send(topic, key=key, value=value, headers=hdrs)
            placed = {}
            for i, f in futs.items():
                md = await f
                placed[i] = (md.partition, md.offset)
            return placed
        finally:
            await p.stop()

    return "aiokafka", asyncio.run(run())


def consume_kafka_python(bootstrap, topic, legacy):
    from kafka import KafkaConsumer, TopicPartition

    kw = {"bootstrap_servers": bootstrap, "group_id": None, "enable_auto_commit": False,
          "consumer_timeout_ms": 5000}
    if legacy:
        kw["api_version"] = (0, 10, 1)
    c = KafkaConsumer(**kw)
    parts = c.partitions_for_topic(topic)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    end = c.end_offsets(tps)
    out = []
    deadline = time.time() + 120
    while time.time() < deadline:
        if all(c.position(tp) >= end[tp] for tp in tps):
            break
        for tp, msgs in c.poll(timeout_ms=1000).items():
            for m in msgs:
                out.append((m.partition, m.offset, m.key, m.value,
                            [(k, v) for k, v in (m.headers or [])]))
    c.close()
    return out


def consume_aiokafka(bootstrap, topic, partitions):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        try:
            # aiokafka only caches metadata of subscribed topics: take the
            # partitions from the metadata the producer saw.
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            end = await c.end_offsets(tps)
            out = []
            deadline = time.time() + 120
            while time.time() < deadline:
                done = True
                for tp in tps:
                    if await c.position(tp) < end[tp]:
                        done = False
                if done:
                    break
                batch = await c.getmany(timeout_ms=1000)
                for tp, msgs in batch.items():
                    for m in msgs:
                        out.append((m.partition, m.offset, m.key, m.value,
                                    [(k, v) for k, v in (m.headers or [])]))
            return out
        finally:
            await c.stop()

    return asyncio.run(run())


def consume_confluent(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "roundtrip",
                  "enable.auto.commit": False, "enable.auto.offset.store": False})
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out = []
    pos = {p: 0 for p in parts}
    deadline = time.time() + 120
    while time.time() < deadline and any(pos[p] < ends[p] for p in parts):
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            raise SystemExit(f"confluent consume error: {m.error()}")
        pos[m.partition()] = m.offset() + 1
        out.append((m.partition(), m.offset(), m.key(), m.value(), list(m.headers() or [])))
    c.close()
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    legacy = "--legacy" in sys.argv
    if args[0] == "count":
        # count CONSUMER BOOTSTRAP TOPIC: print how many records the topic holds.
        consumer, bootstrap, topic = args[1:4]
        if consumer == "kafka-python":
            got = consume_kafka_python(bootstrap, topic, legacy)
        else:
            got = consume_confluent(bootstrap, topic)
        print(len(got))
        return
    producer, consumer, bootstrap, topic, n = args[:5]
    codec = args[5] if len(args) > 5 else "none"
    n = int(n)
    if producer == "confluent":
        name, placed = produce_confluent(bootstrap, topic, n, codec)
    elif producer == "kafka-python":
        name, placed = produce_kafka_python(bootstrap, topic, n, codec, legacy)
    elif producer == "aiokafka":
        name, placed = produce_aiokafka(bootstrap, topic, n, codec)
    else:
        raise SystemExit(f"unknown producer {producer}")
    assert len(placed) == n, f"{len(placed)} of {n} acknowledged"

    if consumer == "kafka-python":
        got = consume_kafka_python(bootstrap, topic, legacy)
    elif consumer == "aiokafka":
        got = consume_aiokafka(bootstrap, topic, {p for p, _ in placed.values()})
    elif consumer == "confluent":
        got = consume_confluent(bootstrap, topic)
    else:
        raise SystemExit(f"unknown consumer {consumer}")

    by_pos = {(p, o): (k, v, h) for p, o, k, v, h in got}
    mine = sorted((p, o) for p, o, k, v, h in got if k and k.startswith(name.encode() + b"-key-"))
    problems = []
    for i, key, value, hdrs in records(name, n, headers=not legacy):
        pos = placed[i]
        if pos not in by_pos:
            problems.append(f"record {i} at {pos} not read back")
            continue
        k, v, h = by_pos[pos]
        if k != key or v != value:
            problems.append(f"record {i} at {pos}: key/value differ ({k!r})")
        if [(a, bytes(b)) for a, b in h] != hdrs:
            problems.append(f"record {i} at {pos}: headers {h!r} != {hdrs!r}")
    if len(mine) != n:
        problems.append(f"read {len(mine)} records of {name}, produced {n} (duplicates or strays)")
    # Per-partition order: within a partition, record numbers rise with offsets.
    order = {}
    for i in range(n):
        order.setdefault(placed[i][0], []).append((placed[i][1], i))
    for p, lst in order.items():
        lst.sort()
        if [i for _, i in lst] != sorted(i for _, i in lst):
            problems.append(f"partition {p}: records out of order")
    partitions = sorted({p for p, _ in placed.values()})
    print(f"{name}: {n} records over partitions {partitions}, read back with {consumer}: "
          f"{'OK' if not problems else 'FAILED'}")
    for msg in problems[:10]:
        print("  " + msg)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
