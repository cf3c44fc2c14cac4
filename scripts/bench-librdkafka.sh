#!/usr/bin/env bash
# librdkafka producer/consumer benchmark against a single release broker on
# loopback (issue 7). Builds scripts/bench/rdkafka_perf.c with gcc against
# Debian's librdkafka, starts `gregor broker` on a free port with a
# temporary data directory, and runs:
#   produce, 100-byte records, 1 partition, acks=1, linger 5 ms, 16 KiB batches
#   the same with ~1 MB batches (batch.size 1000000, batch.num.messages 100000)
#   the same as the first with acks=all
#   8 partitions, acks=1 (librdkafka's partitioner)
#   consume the 1-partition topic from the beginning
#   produce at half the first run's rate (same settings), for latency p50/p99
# and, in the same run, the physical limits: page-cache write bandwidth with
# dd into the data directory's file system and loopback TCP with iperf3.
# Every row carries the broker's CPU seconds (utime+stime from /proc),
# CPU seconds per GB of record values ingested, VmRSS/VmHWM and `uptime`'s
# load average. Producer latency runs from handing a record to librdkafka to
# its delivery report; one warm-up record per run is not counted. Prints a
# markdown table. Not part of the test suite.
#
# Usage: scripts/bench-librdkafka.sh [RECORDS] [RECORD_SIZE]
# Environment: GREGOR_BIN (default: a release build of this checkout),
# KEEP=1 keeps the temporary directory (data, broker log).
# Needs: gcc, librdkafka-dev, iperf3 (optional), python3.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${1:-3000000}"
SIZE="${2:-100}"

if [ -z "${GREGOR_BIN:-}" ]; then
    cargo build --quiet --release -p runtime --bin gregor
    GREGOR_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/gregor"
fi
[ -x "$GREGOR_BIN" ] || { echo "no gregor binary at $GREGOR_BIN" >&2; exit 1; }
[ -f /usr/include/librdkafka/rdkafka.h ] ||
    { echo "librdkafka headers missing: apt-get install librdkafka-dev" >&2; exit 1; }

WORK="$(mktemp -d -t gregor-bench-rdkafka-XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PERF="$WORK/rdkafka_perf"
gcc -O2 -Wall -o "$PERF" scripts/bench/rdkafka_perf.c -lrdkafka

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # PORT
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listening on $1 after 30 s" >&2
    return 1
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

# ---- physical limits -------------------------------------------------
DATA="$WORK/data"
mkdir -p "$DATA"
sync
DD=$(dd if=/dev/zero of="$DATA/dd.bin" bs=1M count=1024 2>&1 | tail -1 | sed 's/.*, //')
DD_LOAD=$(load)
rm -f "$DATA/dd.bin"
if command -v iperf3 >/dev/null; then
    IPORT="$(free_port)"
    iperf3 -s -p "$IPORT" >/dev/null 2>&1 &
    IPID=$!
    # (a probe connection would confuse iperf3's server, so just wait)
    sleep 1
    TCP=$(iperf3 -c 127.0.0.1 -p "$IPORT" -t 3 -f g 2>/dev/null |
        awk '/receiver/ {print $(NF-2), $(NF-1)}' || true)
    kill "$IPID" 2>/dev/null || true
    wait "$IPID" 2>/dev/null || true
    TCP_HOW="iperf3 -t 3, one stream"
else
    TCP=$(python3 - <<'EOF'
import socket, threading, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def sink():
    c, _ = srv.accept()
    while c.recv_into(buf2):
        pass
buf2 = bytearray(1 << 20)
t = threading.Thread(target=sink); t.start()
s = socket.create_connection(srv.getsockname()); buf = b"\0" * (1 << 20)
n = 0; t0 = time.time()
while time.time() - t0 < 3:
    s.sendall(buf); n += len(buf)
s.close(); t.join()
print(f"{n * 8 / (time.time() - t0) / 1e9:.1f} Gbits/sec")
EOF
)
    TCP_HOW="python socket pump, 3 s"
fi
TCP_LOAD=$(load)

# ---- broker ------------------------------------------------------------
PORT="$(free_port)"
BOOT="127.0.0.1:$PORT"
"$GREGOR_BIN" broker --override "listeners=PLAINTEXT://$BOOT" \
    --override "log.dirs=$DATA" >"$WORK/broker.log" 2>&1 &
BROKER=$!
PIDS+=("$BROKER")
wait_port "$PORT"
"$GREGOR_BIN" topics -b "$BOOT" create p1 --partitions 1 >/dev/null
"$GREGOR_BIN" topics -b "$BOOT" create p1big --partitions 1 >/dev/null
"$GREGOR_BIN" topics -b "$BOOT" create p8 --partitions 8 >/dev/null
"$GREGOR_BIN" topics -b "$BOOT" create lat --partitions 1 >/dev/null

TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$BROKER/stat"; }
# VmRSS/VmHWM of the broker in MiB (the kernel reports kB).
status() { awk -v k="$1:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$BROKER/status"; }

ROWS=()
MAX_RPS=0
# run NAME BYTES_INGESTED ARGS... : runs rdkafka_perf and appends a row.
run() {
    local name="$1" ingest="$2"
    shift 2
    local before after out res cpu per_gb l
    before=$(cpu_ticks)
    out=$("$PERF" "$@" -b "$BOOT")
    after=$(cpu_ticks)
    l=$(load)
    res=$(grep '^RESULT' <<<"$out")
    echo "$out" | grep -v '^RESULT' >&2
    cpu=$(awk -v a="$after" -v b="$before" -v t="$TICK" 'BEGIN {printf "%.2f", (a - b) / t}')
    if [ "$ingest" -gt 0 ]; then
        per_gb=$(awk -v c="$cpu" -v g="$ingest" 'BEGIN {printf "%.1f", c / (g / 1e9)}')
    else
        per_gb="–"
    fi
    val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$res"; }
    if [ "$(val mode)" = produce ]; then
        ROWS+=("| $name | $(val rps) | $(val mbps) | $(val avg_ms) | $(val p50_ms) | $(val p99_ms) | $(val max_ms) | $cpu | $per_gb | $(status VmRSS) / $(status VmHWM) MiB | $l |")
        LAST_RPS=$(val rps)
    else
        ROWS+=("| $name | $(val rps) ($(val steady_rps) after the first record) | $(val mbps) ($(val steady_mbps)) | first record after $(val first_ms) ms | – | – | – | $cpu | $per_gb | $(status VmRSS) / $(status VmHWM) MiB | $l |")
    fi
}

N="$RECORDS"
BYTES=$((N * SIZE))
run "produce p1, acks=1, linger 5 ms, batch 16 KiB" "$BYTES" \
    produce -t p1 -n "$N" -s "$SIZE" -a 1 -l 5 -B 16384 -M 10000
# The latency run below uses the same settings at half this rate.
MAX_RPS=$LAST_RPS
run "produce p1, acks=1, linger 5 ms, batch 1 MB" "$BYTES" \
    produce -t p1big -n "$N" -s "$SIZE" -a 1 -l 5 -B 1000000 -M 100000
run "produce p1, acks=all, linger 5 ms, batch 16 KiB" "$BYTES" \
    produce -t p1 -n "$N" -s "$SIZE" -a all -l 5 -B 16384 -M 10000
run "produce p8, acks=1, linger 5 ms, batch 16 KiB" "$BYTES" \
    produce -t p8 -n "$N" -s "$SIZE" -a 1 -l 5 -B 16384 -M 10000
run "consume p1 from the beginning ($((2 * N)) records)" 0 \
    consume -t p1 -n $((2 * N))
run "consume p1big from the beginning ($N records)" 0 \
    consume -t p1big -n "$N"
HALF=$(awk -v r="$MAX_RPS" 'BEGIN {printf "%d", r / 2}')
run "produce at half the maximum ($HALF records/s), acks=1, linger 5 ms, 16 KiB" "$BYTES" \
    produce -t lat -n "$N" -s "$SIZE" -a 1 -l 5 -B 16384 -M 10000 -r "$HALF"

DISK=$(du -sb "$DATA" | cut -f1)
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $N records of $SIZE bytes per produce run, gregor at $GREGOR_BIN"
echo
echo "| run | records/s | MB/s | avg ms | p50 ms | p99 ms | max ms | broker CPU s | CPU s/GB | broker RSS / HWM | load avg |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "| physical limit | measured | load avg |"
echo "|---|---|---|"
echo "| page-cache write, dd bs=1M count=1024 into the data dir's file system | $DD | $DD_LOAD |"
echo "| loopback TCP ($TCP_HOW) | $TCP | $TCP_LOAD |"
echo
echo "Segment files after the run: $((DISK / 1000000)) MB in $DATA."
