#!/usr/bin/env bash
# Installs what Gregor's tests need on a fresh machine, then runs the whole
# suite. This is the test command the README gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

log "toolchain"
cargo --version
rustc --version

# --- Kafka clients for the end-to-end tests (tests/) -------------------------
# kcat (librdkafka 2.0.2) from Debian; confluent-kafka, kafka-python and
# aiokafka in a virtualenv at the repo root. Every step is idempotent.
log "Kafka clients for the end-to-end tests"
if command -v kcat >/dev/null 2>&1; then
    echo "kcat present: $(command -v kcat)"
elif [ "$(id -u)" -eq 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y kcat
else
    echo "kcat missing and not root: the kcat end-to-end tests will fail under CI=true" >&2
fi
# ZooKeeper (Debian's package, Java) for the cluster tests (tests/tests/cluster_*.rs).
if [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1; then
    echo "zookeeper present: /usr/share/java/zookeeper.jar"
elif [ "$(id -u)" -eq 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y zookeeper
else
    echo "zookeeper missing and not root: the cluster tests will fail under CI=true" >&2
fi
VENV="$PWD/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# kafka-python needs the codec modules for snappy, lz4 and zstd.
CLIENT_PINS=(confluent-kafka==2.16.* kafka-python==3.0.12 aiokafka==0.14.*
    python-snappy==0.7.* lz4==4.* zstandard==0.25.*)
if ! "$VENV/bin/python" -c 'import confluent_kafka, kafka, aiokafka, snappy, lz4, zstandard' >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${CLIENT_PINS[@]}"
fi
"$VENV/bin/python" -c 'import confluent_kafka, kafka, aiokafka; print("confluent-kafka", confluent_kafka.__version__, "librdkafka", confluent_kafka.libversion()[0]); print("kafka-python", kafka.__version__); print("aiokafka", aiokafka.__version__)'
export GREGOR_PYTHON="$VENV/bin/python"

log "unit, property, model and end-to-end tests (cargo test --workspace)"
cargo test --workspace --all-targets

log "loom: the segment writer/reader publication protocol"
cargo test -p runtime --features loom --test loom_publish

log "all tests passed"
