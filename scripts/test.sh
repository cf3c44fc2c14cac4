#!/usr/bin/env bash
# Installs what Gregor's tests need on a fresh machine, then runs the whole
# suite. This is the test command the README gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

log "toolchain"
cargo --version
rustc --version

log "unit, property and model tests (cargo test --workspace)"
cargo test --workspace --all-targets

log "loom: the segment writer/reader publication protocol"
cargo test -p runtime --features loom --test loom_publish

log "all tests passed"
