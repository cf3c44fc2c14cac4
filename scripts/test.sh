#!/usr/bin/env bash
# Installs what Gregor's tests need on a fresh machine, then runs the whole
# suite. This is the test command the README gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

log "toolchain"
cargo --version
rustc --version

log "real Kafka clients for the end-to-end tests (kcat, confluent-kafka, kafka-python, aiokafka)"
if ! command -v kcat >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO apt-get install -y kcat
fi
kcat -V | head -1
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check \
    confluent-kafka==2.16.1 kafka-python==3.0.12 aiokafka==0.14.0 \
    lz4 zstandard python-snappy

log "unit, property and model tests (cargo test --workspace)"
cargo test --workspace --all-targets

log "loom: the segment writer/reader publication protocol"
cargo test -p runtime --features loom --test loom_publish

log "end-to-end: the gregor binary driven by real Kafka clients"
cargo build -p runtime --bin gregor
cargo test -p tests -- --include-ignored

log "all tests passed"
