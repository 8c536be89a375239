#!/usr/bin/env bash
# The README's test command: set-up when missing, then every test of the workspace. Needs no GPU
# and no network once set up; GPU paths skip with a printed reason where there is no GPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
target="${CARGO_TARGET_DIR:-$root/target}"
# The board's binary, exactly as deployed; tests/tests/aarch64_parity.rs runs it under qemu.
cargo flight   # alias in .cargo/config.toml
# Compile every test first: the dev `orbhash` binary built for them also cuts the data sets.
cargo test --workspace --no-run "$@"
bash scripts/datasets.sh "$target/debug/orbhash"
cargo test --workspace "$@"
