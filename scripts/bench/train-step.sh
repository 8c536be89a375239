#!/usr/bin/env bash
# tch vs PyTorch eager: one DHCNN training step (EfficientNet-Lite0 + 64-bit head, batch 10,
# 128 px, as `orbhash train` defaults) on the CPU at 1 and 2 threads. The two programs alternate
# for ROUNDS rounds so that load from other work on the machine hits both alike; compare the
# lowest median of each. Benchmark only: PyTorch lives in a venv of its own, never in the product.
#   bash scripts/bench/train-step.sh [ROUNDS]   (VENV=/var/tmp/bench-venv by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
rounds="${1:-3}"
venv="${VENV:-/var/tmp/bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  # The CPU wheel index when reachable, else PyPI's (CUDA) build, which runs on the CPU as well.
  "$venv/bin/pip" install -q torch==2.11.0 --index-url https://download.pytorch.org/whl/cpu \
    || "$venv/bin/pip" install -q torch==2.11.0
fi
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p orbhash-host
for round in $(seq "$rounds"); do
  echo "== round $round =="
  scripts/with-libtorch "$target/release/orbhash" bench train-step --threads 1,2 --steps 20
  "$venv/bin/python" -W ignore scripts/bench/train_step_torch.py --threads 1,2 --steps 20
done
