#!/usr/bin/env bash
# The README's test command: set-up when missing, then every test of the workspace. Needs no GPU
# and no network once set up; GPU paths skip with a printed reason where there is no GPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
# The board's binary, exactly as deployed; tests/tests/aarch64_parity.rs runs it under qemu.
cargo flight   # alias in .cargo/config.toml
cargo test --workspace "$@"
