#!/usr/bin/env bash
# Cuts the labelled data sets from the fetched assets into .cache/data/, when missing, with the
# `orbhash` binary given: scripts/main-job.sh passes its release build, scripts/test.sh the dev
# build its tests use, so no extra configuration is compiled for this step.
#   usage: scripts/datasets.sh PATH/TO/orbhash
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
orbhash="${1:?usage: scripts/datasets.sh PATH/TO/orbhash}"
for name in s2-brandenburg nc-landsat; do
  # A set built before scenes were kept beside the patches is rebuilt: the board cuts those.
  [ -f "$root/.cache/data/$name/manifest.json" ] && [ -d "$root/.cache/data/$name/scenes" ] && continue
  printf 'datasets: building %s into .cache/data/%s\n' "$name" "$name" >&2
  (cd "$root" && scripts/with-libtorch "$orbhash" data build "$name")
done
