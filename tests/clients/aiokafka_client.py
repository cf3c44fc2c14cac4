"""aiokafka driver for the end-to-end tests (produce and consume, same
options as confluent.py)."""

import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from common import GroupStop, Pacer, Rec, base_parser, emit, fail, parts, read_input, say


async def produce(a):
    acks = {"all": "all", "-1": "all", "1": 1, "0": 0}[a.acks]
    p = AIOKafkaProducer(bootstrap_servers=a.bootstrap, acks=acks, linger_ms=5,
                         compression_type=None if a.compression == "none" else a.compression,
                         enable_idempotence=a.idempotence,
                         request_timeout_ms=int(a.timeout * 1000))
    await p.start()
    try:
        recs = read_input(a.input)
        pacer = Pacer(a.rate, a.progress)
        futures = []
        for i, r in enumerate(recs):
            pacer.before_send(i)
            futures.append((r, await p.send(
                a.topic, value=r.value, key=r.key,
                partition=r.partition if r.partition >= 0 else None,
                timestamp_ms=r.timestamp if r.timestamp >= 0 else None,
                headers=r.headers or None)))
        out = []
        for r, f in futures:
            md = await f
            out.append(Rec(md.partition, md.offset, md.timestamp, r.key, r.value, r.headers))
        pacer.acked(len(out), force=True)
    finally:
        await p.stop()
    for r in out:
        emit(r)


async def consume(a):
    c = AIOKafkaConsumer(bootstrap_servers=a.bootstrap, group_id=None,
                         enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    n = 0
    try:
        c.assign([TopicPartition(a.topic, p) for p in range(a.partitions)])
        await c.seek_to_beginning()
        deadline = time.monotonic() + a.timeout
        while n < a.count and time.monotonic() < deadline:
            batches = await c.getmany(timeout_ms=500, max_records=5000)
            for _, msgs in batches.items():
                for m in msgs:
                    emit(Rec(m.partition, m.offset, m.timestamp, m.key, m.value,
                             list(m.headers or [])))
                    n += 1
    finally:
        await c.stop()
    if n < a.count:
        fail("consumed %d of %d records within %ss" % (n, a.count, a.timeout))


async def group_consume(a):
    """Subscribes as a member of --group; commits after every batch unless
    --auto-commit (same output as confluent.py)."""
    from aiokafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            say("revoke %s" % parts(tp.partition for tp in revoked))

        async def on_partitions_assigned(self, assigned):
            say("assign %s" % parts(tp.partition for tp in assigned))

    c = AIOKafkaConsumer(bootstrap_servers=a.bootstrap, group_id=a.group,
                         enable_auto_commit=a.auto_commit, auto_commit_interval_ms=1000,
                         auto_offset_reset="earliest",
                         session_timeout_ms=a.session_timeout_ms,
                         heartbeat_interval_ms=max(100, a.session_timeout_ms // 6))
    await c.start()
    stop = GroupStop(a)
    try:
        c.subscribe([a.topic], listener=Listener())
        while not stop.done() and not stop.timed_out():
            batches = await c.getmany(timeout_ms=200, max_records=500)
            k = 0
            for _, msgs in batches.items():
                for m in msgs:
                    emit(Rec(m.partition, m.offset, m.timestamp, m.key, m.value,
                             list(m.headers or [])))
                    k += 1
            sys.stdout.flush()
            stop.got(k)
            if k and not a.auto_commit:
                offsets = {tp: await c.position(tp) for tp in c.assignment()}
                await c.commit()
                for tp, off in sorted(offsets.items()):
                    say("commit %d %d" % (tp.partition, off))
    finally:
        await c.stop()
    stop.check()


def main():
    a = base_parser(__doc__).parse_args()
    try:
        asyncio.run({"produce": produce, "consume": consume,
                     "group-consume": group_consume}[a.command](a))
    except KafkaError as e:
        fail(repr(e))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
