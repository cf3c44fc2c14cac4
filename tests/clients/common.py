"""Record lines shared by the client drivers and the Rust tests.

One record per line, tab-separated:
``partition offset timestamp key value headers`` with key and value in hex
(``-`` for null) and headers as ``name=hexvalue`` joined by ``,`` (``-`` for
none). Lines starting with ``#`` are comments (progress, diagnostics).
"""

import argparse
import sys
import time


class Rec:
    __slots__ = ("partition", "offset", "timestamp", "key", "value", "headers")

    def __init__(self, partition, offset, timestamp, key, value, headers):
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers

    def line(self):
        def h(b):
            return "-" if b is None else b.hex()

        hs = ",".join("%s=%s" % (k, (v or b"").hex()) for k, v in self.headers) or "-"
        def n(v):
            return -1 if v is None else v

        return "%d\t%d\t%d\t%s\t%s\t%s" % (
            n(self.partition), n(self.offset), n(self.timestamp), h(self.key), h(self.value), hs)


def parse(line):
    f = line.rstrip("\n").split("\t")
    if len(f) != 6:
        raise ValueError("expected 6 fields: %r" % line)

    def b(s):
        return None if s == "-" else bytes.fromhex(s)

    headers = []
    if f[5] != "-":
        for item in f[5].split(","):
            k, v = item.split("=", 1)
            headers.append((k, bytes.fromhex(v)))
    return Rec(int(f[0]), int(f[1]), int(f[2]), b(f[3]), b(f[4]), headers)


def read_input(path):
    with open(path) as f:
        return [parse(l) for l in f if l.strip() and not l.startswith("#")]


def emit(rec, out=sys.stdout):
    out.write(rec.line() + "\n")


def fail(msg):
    sys.stderr.write("driver error: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(1)


class Pacer:
    """Spreads sends over time (``--rate`` records per second, 0: no limit)
    and writes the number of acknowledged records to a progress file."""

    def __init__(self, rate, progress):
        self.rate = rate
        self.progress = progress
        self.start = time.monotonic()
        self.last_write = 0.0

    def before_send(self, i):
        if self.rate > 0:
            due = self.start + i / self.rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)

    def acked(self, n, force=False):
        if not self.progress:
            return
        now = time.monotonic()
        if force or now - self.last_write > 0.05:
            self.last_write = now
            with open(self.progress + ".tmp", "w") as f:
                f.write(str(n))
            import os
            os.replace(self.progress + ".tmp", self.progress)


def base_parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("command", choices=["produce", "consume", "offsets-for-times", "create-topic",
                                        "group-consume", "create-partitions", "alter-config",
                                        "delete-records", "describe-cluster",
                                        "describe-log-dirs", "reassign", "list-reassignments",
                                        "elect-leaders", "commit-offsets", "group-offsets",
                                        "delete-group-offsets"])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--config", action="append", default=[],
                   help="alter-config: key=value to set (repeatable)")
    p.add_argument("--topic", required=True)
    p.add_argument("--input", help="records to produce (record lines)")
    p.add_argument("--acks", default="all")
    p.add_argument("--compression", default="none")
    p.add_argument("--idempotence", action="store_true")
    p.add_argument("--rate", type=float, default=0, help="records per second (0: unpaced)")
    p.add_argument("--progress", help="file receiving the acknowledged count")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--count", type=int, default=0, help="records to consume")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--timestamp", type=int, nargs="+",
                   help="offsets-for-times: targets, one offset printed per line")
    p.add_argument("--partition", type=int, default=0)
    p.add_argument("--replicas",
                   help="reassign: target brokers of --partition, comma-separated, "
                        "or 'cancel'")
    p.add_argument("--before", type=int, default=-1,
                   help="delete-records: delete the records of --partition below this "
                        "offset (-1: up to the high watermark)")
    p.add_argument("--max-in-flight", type=int, default=0,
                   help="produce requests in flight per connection (0: client default)")
    p.add_argument("--allow-errors", action="store_true",
                   help="produce: report what was acknowledged even if some sends failed")
    p.add_argument("--idle", type=float, default=0.0,
                   help="consume: after --count records, go on until nothing arrives for this long")
    p.add_argument("--sync", action="store_true",
                   help="produce: wait for each record's acknowledgement (one batch each)")
    p.add_argument("--api-version", help="e.g. 0.10.1 (kafka-python only)")
    # Consumer groups (group-consume): subscribe to --topic as a member of
    # --group, print assignment changes and commits as "#" lines.
    p.add_argument("--group", help="group-consume: the group id")
    p.add_argument("--session-timeout-ms", type=int, default=10000)
    p.add_argument("--auto-commit", action="store_true",
                   help="group-consume: let the client commit on its timer "
                        "(default: commit synchronously after every batch)")
    p.add_argument("--stop-file",
                   help="group-consume: once this file exists, stop after --idle "
                        "seconds without records (instead of after --count)")
    p.add_argument("--metadata-refresh-ms", type=int, default=0,
                   help="group-consume: metadata refresh interval (0: client default)")
    return p


class GroupStop:
    """When a group member stops: after --count records and --idle quiet
    seconds, or (with --stop-file) once that file exists and nothing arrived
    for --idle seconds; never after --timeout."""

    def __init__(self, a):
        self.a = a
        self.n = 0
        self.start = time.monotonic()
        self.last = self.start

    def got(self, k):
        self.n += k
        if k:
            self.last = time.monotonic()

    def done(self):
        import os
        now = time.monotonic()
        quiet = now - self.last >= self.a.idle
        if self.a.stop_file:
            return os.path.exists(self.a.stop_file) and quiet
        return self.n >= self.a.count and quiet

    def timed_out(self):
        return time.monotonic() - self.start > self.a.timeout

    def check(self):
        if not self.a.stop_file and self.n < self.a.count:
            fail("consumed %d of %d records within %ss" % (self.n, self.a.count, self.a.timeout))


def say(line):
    """A "#" diagnostic line on stdout (ignored by the record parser)."""
    sys.stdout.write("# " + line + "\n")
    sys.stdout.flush()


def parts(tps):
    return ",".join(str(p) for p in sorted(tps)) or "-"
