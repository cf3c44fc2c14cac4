#!/usr/bin/env bash
# Replication cost on loopback: starts a standalone ZooKeeper and three
# `gregor broker`s in ZooKeeper mode, then runs `gregor perf produce` with
# acks=all against an RF=1 topic and an RF=3 topic (min.insync.replicas=2)
# and prints both summaries. Not part of the test suite.
#
# Usage: scripts/bench-cluster.sh [RECORDS] [RECORD_SIZE]
# Environment: GREGOR_BIN (default: a release build of this checkout),
# PARTITIONS (default 6), KEEP=1 keeps the temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${1:-500000}"
SIZE="${2:-100}"
PARTITIONS="${PARTITIONS:-6}"

if [ -z "${GREGOR_BIN:-}" ]; then
    cargo build --quiet --release -p runtime --bin gregor
    GREGOR_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/gregor"
fi
[ -x "$GREGOR_BIN" ] || { echo "no gregor binary at $GREGOR_BIN" >&2; exit 1; }
[ -f /usr/share/java/zookeeper.jar ] || { echo "ZooKeeper missing: apt-get install zookeeper" >&2; exit 1; }

WORK="$(mktemp -d -t gregor-bench-cluster-XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # PORT WHAT
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "$2 not listening on $1 after 30s" >&2
    return 1
}

ZK_PORT="$(free_port)"
mkdir -p "$WORK/zk"
java -Xmx256m -Dzookeeper.admin.enableServer=false \
    -cp "$(ls /usr/share/java/*.jar | tr '\n' :)" \
    org.apache.zookeeper.server.ZooKeeperServerMain "$ZK_PORT" "$WORK/zk/data" \
    >"$WORK/zk/zookeeper.log" 2>&1 &
PIDS+=($!)
wait_port "$ZK_PORT" ZooKeeper

BOOT=()
for id in 1 2 3; do
    port="$(free_port)"
    dir="$WORK/broker-$id"
    mkdir -p "$dir"
    cat >"$dir/server.properties" <<EOF
broker.id=$id
listeners=PLAINTEXT://127.0.0.1:$port
log.dirs=$dir/data
zookeeper.connect=127.0.0.1:$ZK_PORT/gregor
zookeeper.session.timeout.ms=6000
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
EOF
    RUST_LOG="${RUST_LOG:-warn}" "$GREGOR_BIN" broker --config "$dir/server.properties" \
        >/dev/null 2>"$dir/broker.log" &
    PIDS+=($!)
    BOOT+=("127.0.0.1:$port")
done
for b in "${BOOT[@]}"; do wait_port "${b##*:}" "broker $b"; done
# The native client takes one bootstrap address.
BOOTSTRAP="${BOOT[0]}"

create() { # TOPIC RF
    # CreateTopics may answer before every leader is elected: the loop
    # below waits for them either way.
    "$GREGOR_BIN" topics -b "$BOOTSTRAP" create "$1" --partitions "$PARTITIONS" \
        --replication-factor "$2" --config min.insync.replicas="$(( $2 < 2 ? 1 : 2 ))" ||
        echo "(waiting for the leaders of $1)" >&2
    for _ in $(seq 1 300); do
        desc="$("$GREGOR_BIN" topics -b "$BOOTSTRAP" describe "$1" 2>/dev/null || true)"
        led="$(grep -c 'Leader: [0-9]' <<<"$desc" || true)"
        if [ "$led" = "$PARTITIONS" ]; then return 0; fi
        sleep 0.2
    done
    echo "topic $1 has no leaders after 60s:" >&2
    echo "$desc" >&2
    return 1
}

create bench-rf1 1
create bench-rf3 3

# The load comes from librdkafka (scripts/bench/rdkafka_perf.c): it routes
# every partition to its leader, as any Kafka client does.
PERF="$WORK/rdkafka_perf"
gcc -O2 -Wall -o "$PERF" scripts/bench/rdkafka_perf.c -lrdkafka ||
    { echo "building the librdkafka producer failed (apt-get install librdkafka-dev)" >&2; exit 1; }

echo "== $RECORDS records of $SIZE bytes, acks=all, linger 5 ms, $PARTITIONS partitions, 3 brokers on loopback (load: $(cut -d' ' -f1-3 /proc/loadavg))"
for t in bench-rf1 bench-rf3; do
    for batch in 16384 1048576; do
        printf '%s batch.size=%s: ' "$t" "$batch"
        "$PERF" produce -b "$BOOTSTRAP" -t "$t" -n "$RECORDS" -s "$SIZE" -a all -l 5 -B "$batch" |
            grep '^RESULT' || echo "failed"
    done
done
echo "(load after: $(cut -d' ' -f1-3 /proc/loadavg))"
