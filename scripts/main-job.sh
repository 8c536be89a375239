#!/usr/bin/env bash
# The README's main-job command: the whole mission on the small real default (s2-brandenburg:
# Sentinel-2 patches labelled from OpenStreetMap), set-up included when missing.
#   1. set-up (libtorch, pretrained weights, imagery), a release build of the three programs, and
#      the data sets cut by that build;
#   2. train DHCNN (64 bits, every band; frozen ImageNet-pretrained EfficientNet-Lite0 on a CPU,
#      the whole network on a GPU), evaluate it (mAP, OA, plots), export it to ONNX (f32 and int8), verified;
#   3. on board and on the ground: hash the whole Sentinel-2 scene cut into tiles and deliver the
#      records over a simulated intermittent, lossy two-way link (contact windows, lost, damaged
#      and duplicated frames both ways, seeded) with acknowledged delivery: all of them arrive;
#   4. on the ground: search by a tile's image, by a label, by a hex code; task the best hit of
#      the first query, which the board sends as a GeoTIFF at the next pass;
#   5. a final report.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
started=$(date +%s)
bash scripts/setup.sh
setup_done=$(date +%s)
step() { printf '\n== %s ==\n' "$*"; }
out=runs/main-job

step "build (release)"
cargo build --release -p orbhash-host -p orbhash-edge -p orbhash-ground
target="${CARGO_TARGET_DIR:-$root/target}"
orbhash() { scripts/with-libtorch "$target/release/orbhash" "$@"; }
edge() { "$target/release/orbhash-edge" "$@"; }
ground() { "$target/release/orbhash-ground" "$@"; }
orbhash info
bash scripts/datasets.sh "$target/release/orbhash"
data=.cache/data/s2-brandenburg
scenes=("$data"/scenes/*.tif)
scene=${scenes[0]}
build_done=$(date +%s)

step "train and evaluate DHCNN"
# Bit-reproducible CPU training: libtorch's own kernels, MKL's and the thread count each change
# the trained bits (three ISAs gave three model ids, MKL's dispatch and 1 vs 2 threads two more,
# all with the same metrics: docs/results.md, "Reproducibility"). Pinned to AVX2 kernels (any
# x86-64 CPU of the last decade has them) and 2 threads, so the shipped files' ids come back on
# another machine; a caller's own settings win.
export ATEN_CPU_CAPABILITY="${ATEN_CPU_CAPABILITY:-avx2}" MKL_CBWR="${MKL_CBWR:-AVX2}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
rm -rf "$out" && mkdir -p "$out"
# The paper's learning rate (1e-2 decaying to 1e-5 without momentum) is for fine-tuning the whole
# network; a linear head on frozen features needs momentum and a lighter quantisation weight than
# the paper's 25, which collapses the codes here. β 5: hash activations far enough from zero that
# the int8 model keeps the codes (docs/results.md, issue 6). The fixed L1C reflectance scale and
# the authors' pairwise gradient. On a CPU the backbone stays frozen: last-blocks training takes
# about 22 s an epoch on 2 cores (11 min for 30), over this job's budget, and dihedral augmentation
# of the frozen features gave no clear gain on the validation split for 3x the time. A frozen stem
# cannot learn what NIR adds, and RGB beat every band on both validation splits, so the CPU job
# reads RGB; the GPU job trains the stem and reads every band (docs/results.md, issue 16).
if orbhash info 2>/dev/null | grep -q "cuda available: true"; then
  echo "CUDA present: fine-tuning the whole network"
  orbhash train --out "$out" --epochs 30 --lr 0.01 --lr-end 1e-4 --momentum 0.9 --beta 5 \
    --backbone-training full --augment dihedral
else
  orbhash train --backbone-training frozen --bands rgb --out "$out" --epochs 30 --lr 0.01 \
    --lr-end 1e-4 --momentum 0.9 --beta 5
fi

step "export to ONNX for the board (f32 and int8), verified against the checkpoint"
orbhash export "$out/checkpoint.safetensors" --out "$out/dhcnn64-f32.onnx" --verify
# The int8 file keeps the stem, the depthwise and the projection convolutions in f32. With the
# band clip at the database's 99.9th percentile (`orbhash train`'s default) it met the parity
# thresholds on this machine with 2 labels of 202 differing, the most the 99 % threshold allows
# (docs/results.md, issue 16): a machine whose libtorch trains a slightly different head may
# miss, so a miss is reported here rather than ending the job.
orbhash export "$out/checkpoint.safetensors" --out "$out/dhcnn64-int8.onnx" --int8 \
  --keep-f32 stem,depthwise,project --verify \
  || echo "(int8 missed a parity threshold: figures above)"
edge inspect "$out/dhcnn64-f32.onnx" | grep -E "^card|^input"

step "on board and on the ground: one pass over an intermittent, lossy two-way link"
# The f32 model on this x86-64 host: tract runs int8 as integer kernels on the ARM board, but its
# x86-64 int8 path is slower than f32 (see docs/results.md). The board and the ground station are
# two processes over a pair of files (the link); each damages what it sends (2 % of frames lost,
# 2 % damaged, 1 % duplicated, seeded) in 1.5 s contact windows 0.5 s apart on the wall clock.
# Records go down with CFDP class 2: a frame leaves the board's queue only once the ground has
# committed it, so every record arrives. The scene stays in the board's scene store for tasking.
rm -rf "$out/edge-queue" "$out/scene-store" "$out/archive" "$out"/link-*.bin
key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
printf '%s\n' "$key" > "$out/mission.key"
export ORBHASH_MISSION_KEY="$key"
link=(--link-up 1500ms --link-down 500ms --drop 0.02 --corrupt 0.02 --duplicate 0.01)
contact() { # $1: seed of the ground's uplink damage
  ground contact --archive "$out/archive" --link "pipe:$out/link-up.bin,$out/link-down.bin" \
    --key-file "$out/mission.key" --until-idle 5s "${link[@]}" --seed "$1" --json
}
board() { # $1: seed of the board's downlink damage; then extra options
  local seed=$1; shift
  edge run --model "$out/dhcnn64-f32.onnx" --tiles "$scene" --queue "$out/edge-queue" \
    --scene-store "$out/scene-store" --link "pipe:$out/link-down.bin,$out/link-up.bin" \
    --batch 1 "${link[@]}" --seed "$seed" --json "$@"
}
contact 8 > "$out/ground-contact.json" &
ground_pid=$!
board 7 > "$out/edge-run.json"
wait "$ground_pid"
grep -E '"(tiles_hashed|tiles_per_second|ms_per_tile|records_queued|raw_tile_bytes)"' "$out/edge-run.json"
grep -E '"(records_stored|records_files|telecommands_sent)"' "$out/ground-contact.json"
ground stats --archive "$out/archive" | sed -n '1p;/two-way link/,/^$/p'
ground model-card --archive "$out/archive" \
  "$(edge inspect "$out/dhcnn64-f32.onnx" | sed -n 's/^graph id: //p')" "$out/dhcnn64-f32.onnx"

forest=("$data"/forest/*.tif)
query_tile=${forest[0]}
step "query 1: tiles like this one (by image: $query_tile)"
ground query --archive "$out/archive" --onnx "$out/dhcnn64-f32.onnx" --image "$query_tile" -k 5
step "query 2: forest tiles like it (by image, label filter)"
ground query --archive "$out/archive" --onnx "$out/dhcnn64-f32.onnx" --image "$query_tile" \
  --label forest -k 5
step "query 3: by hex code, within Hamming radius 8"
code=$(ground query --archive "$out/archive" --onnx "$out/dhcnn64-f32.onnx" \
  --image "$query_tile" -k 1 --json | sed -n 's/.*"code": "\([0-9a-f]*\)".*/\1/p;T;q')
ground query --archive "$out/archive" --code "$code" --radius 8 -k 5

step "task the best hit of query 1: its full tile comes down at the next pass"
ground task --archive "$out/archive" --from-query --image "$query_tile" \
  --onnx "$out/dhcnn64-f32.onnx" -k 1
rm -f "$out"/link-*.bin
contact 10 > "$out/ground-contact-2.json" &
ground_pid=$!
# The board's next pass: nothing new to hash; it serves the request and listens until quiet.
board 9 --linger 3s > "$out/edge-run-2.json"
wait "$ground_pid"
ground tiles --archive "$out/archive"

step "report"
value() { sed -n "s/.*\"$1\": \\([0-9.e+-]*\\).*/\\1/p;T;q" "$2"; }
total() { sed -n '/"total": {/,/}/p' "$2" | sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p;T;q"; }
sum() { sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" "$2" | awk '{ s += $1 } END { print s + 0 }'; }
raw=$(value raw_tile_bytes "$out/edge-run.json")
sent=$(total bytes_received "$out/ground-contact.json")
echo "retrieval mAP:          $(value map "$out/report.json")"
echo "classification OA:      $(value overall_accuracy "$out/report.json")"
echo "tiles hashed on board:  $(value tiles_hashed "$out/edge-run.json") at $(value tiles_per_second "$out/edge-run.json") tiles/s"
echo "records on the ground:  $(value records_stored "$out/ground-contact.json") of $(value tiles_hashed "$out/edge-run.json") hashed"
echo "downlinked:             $sent B (acknowledged delivery, retransmissions included) for $raw B of raw tiles (ratio $(( raw / (sent > 0 ? sent : 1) )):1)"
echo "link damage:            $(sum lost "$out/edge-run.json") of $(sum frames "$out/edge-run.json") frames lost down, $(sum corrupted "$out/edge-run.json") damaged, $(sum duplicated "$out/edge-run.json") duplicated; $(total retransmitted_bytes "$out/edge-run.json") B resent"
echo "tasked tile:            $(ground tiles --archive "$out/archive" | sed -n '2p' | awk '{print $4, $5, "bytes,", $6, $7, $8, $9, "origin", $10, $11, $12}')"
echo "plots and reports:      $out/ (report.json, pr_curve.png, precision_at_k.png, training_loss.png)"
echo "models:                 $out/dhcnn64-f32.onnx, $out/dhcnn64-int8.onnx"
finished=$(date +%s)
echo "wall time:              $(( finished - started )) s in all: set-up $(( setup_done - started )) s," \
  "release build $(( build_done - setup_done )) s, the job itself $(( finished - build_done )) s"
