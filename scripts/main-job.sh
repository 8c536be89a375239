#!/usr/bin/env bash
# The README's main-job command: set-up when missing, then the mission on the small real default.
# So far the mission is the toolchain itself: both programs are built and report how they run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
cargo build --release --workspace
echo "== orbhash (ground: training, export, ground station) =="
scripts/with-libtorch target/release/orbhash --help
scripts/with-libtorch target/release/orbhash info
echo
echo "== orbhash-edge (on board) =="
target/release/orbhash-edge --help
