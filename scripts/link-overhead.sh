#!/usr/bin/env bash
# What acknowledged delivery costs: bytes on the link per tile delivered over the two-way link
# (CFDP class 2, both sides real processes over a pipe pair) against the one-way fire-and-forget
# downlink, at 0, 2 and 10 % frame loss in each direction, on the default scene (1,152 tiles, the
# shipped f32 model, map coordinates in every record). Two regimes per loss rate:
#   live:    the board hashes while in contact, so each transfer carries the few packets ready;
#   stored:  the board hashed out of contact first, so transfers carry 16 KiB of queued frames.
# Prints a table (docs/results.md, "The two-way link"). Needs the release build:
#   cargo build --release -p orbhash-edge -p orbhash-ground
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
edge="$target/release/orbhash-edge"
ground="$target/release/orbhash-ground"
model=models/s2-brandenburg-dhcnn64-f32.onnx
scenes=(.cache/data/s2-brandenburg/scenes/*.tif)
scene=${scenes[0]}
out=runs/link-overhead
rm -rf "$out" && mkdir -p "$out"
key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
printf '%s\n' "$key" > "$out/mission.key"
export ORBHASH_MISSION_KEY="$key"

"$edge" run --model "$model" --tiles "$scene" --downlink "file:$out/one-way.bin" \
  --queue "$out/one-way-queue" --batch 1 --quiet --json > "$out/one-way.json"

for loss in 0 0.02 0.10; do
  for regime in live stored; do
    run="$out/$regime-$loss"
    mkdir -p "$run"
    board=(run --model "$model" --tiles "$scene" --queue "$run/queue" --batch 1 --quiet --json
      --link "pipe:$run/down.bin,$run/up.bin" --drop "$loss" --seed 1)
    if [ "$regime" = stored ]; then
      # Out of contact: nothing answers, so every frame stays queued.
      "$edge" "${board[@]}" --quiet-limit 1s > /dev/null
      rm -f "$run/down.bin" "$run/up.bin"
    fi
    "$ground" contact --archive "$run/archive" --link "pipe:$run/up.bin,$run/down.bin" \
      --key-file "$out/mission.key" --until-idle 15s --drop "$loss" --seed 2 --json \
      > "$run/ground.json" &
    ground_pid=$!
    "$edge" "${board[@]}" > "$run/edge.json"
    wait "$ground_pid"
  done
done

python3 - "$out" <<'EOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
one_way = json.loads((out / "one-way.json").read_text())
tiles = one_way["tiles_hashed"]
print(f"scene of {tiles} tiles; one-way fire-and-forget: {one_way['downlinked_bytes']} B, "
      f"{one_way['downlinked_bytes'] / tiles:.1f} B/tile (nothing resent, nothing acknowledged)")
print()
head = ("regime", "loss", "stored", "B/tile down", "records", "resent", "overhead",
        "B/tile up", "round trips", "transfers", "restarted", "x one-way")
print("  ".join(f"{h:>11}" for h in head))
for loss in ("0", "0.02", "0.10"):
    for regime in ("live", "stored"):
        run = out / f"{regime}-{loss}"
        edge = json.loads((run / "edge.json").read_text())["link"]["total"]
        stored = json.loads((run / "ground.json").read_text())["records_stored"]
        down = edge["record_bytes"] + edge["retransmitted_bytes"] + edge["overhead_bytes"]
        row = (regime, f"{float(loss):.0%}", f"{stored}/{tiles}", f"{down / tiles:.1f}",
               f"{edge['record_bytes'] / tiles:.1f}", f"{edge['retransmitted_bytes'] / tiles:.1f}",
               f"{edge['overhead_bytes'] / tiles:.1f}", f"{edge['bytes_received'] / tiles:.1f}",
               str(edge["round_trips"]), str(edge["transactions_started"]),
               str(edge["transactions_restarted"]),
               f"{down / one_way['downlinked_bytes']:.2f}")
        print("  ".join(f"{c:>11}" for c in row))
EOF
