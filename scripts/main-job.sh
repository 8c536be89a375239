#!/usr/bin/env bash
# The README's main-job command: set-up when missing, then the mission as far as it is built, on
# the small real default (s2-brandenburg: Sentinel-2 patches labelled from OpenStreetMap).
#   1. build both programs;
#   2. train DHCNN (64 bits) on the frozen, ImageNet-pretrained EfficientNet-Lite0 and evaluate it
#      (mAP, OA, plots);
#   3. exercise the ground station's search on a million synthetic codes.
# Export, on-board hashing and the downlink join as their issues land.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
started=$(date +%s)
bash scripts/setup.sh
step() { printf '\n== %s ==\n' "$*"; }

step "build (release)"
cargo build --release -p orbhash-host -p orbhash-edge
orbhash() { scripts/with-libtorch target/release/orbhash "$@"; }
orbhash info
target/release/orbhash-edge --version

step "data: s2-brandenburg"
orbhash data show .cache/data/s2-brandenburg

step "train and evaluate DHCNN (frozen backbone, CPU-sized)"
# The paper's learning rate (1e-2 decaying to 1e-5 without momentum) is for fine-tuning the whole
# network; a linear head on frozen features needs a larger rate and a lighter quantisation weight.
orbhash train --freeze-backbone --out runs/main-job --epochs 30 \
  --lr 0.01 --lr-end 1e-4 --momentum 0.9 --beta 1

step "ground station: exact Hamming search over 1 M codes"
orbhash ground bench --codes 1000000 --queries 100 --threads 1 --out runs/main-job/ground-bench

step "done"
echo "report and plots: runs/main-job/ (report.json, pr_curve.png, precision_at_k.png, training_loss.png)"
echo "wall time, compilation included: $(( $(date +%s) - started )) s"
