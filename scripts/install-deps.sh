#!/usr/bin/env bash
# Installs everything vsdm needs to build, test and run on Debian 12 (bookworm), from Debian's
# own archive. Idempotent: packages already present are skipped, so a second run is a no-op.
# Must run as root (or with sudo available).
set -euo pipefail

PKGS=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache git
  # clang: the -Wthread-safety build of the LibTorch-free targets (scripts/check-build.sh); its
  # libFuzzer and sanitizer runtimes (only recommended by clang) for scripts/fuzz.sh
  clang libclang-rt-14-dev
  # LibTorch (CPU) with c10d Gloo; gloo headers are a separate package
  libtorch-dev libgloo-dev
  # BLAS: Debian's libtorch uses the libblas.so.3 alternative; the reference BLAS makes
  # linear layers ~17x slower, so install OpenBLAS and make it the alternative.
  libopenblas0-pthread
  # RPC, metrics, common libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  prometheus-cpp-dev libabsl-dev
  libgtest-dev libgmock-dev
  libyaml-cpp-dev libcli11-dev libsqlite3-dev sqlite3 libpng-dev zlib1g-dev
  libcairo2-dev nlohmann-json3-dev fonts-dejavu-core
  # the real image set of the image example and its tests (/usr/share/datasets/fashion-mnist)
  dataset-fashion-mnist
  # Python side of the TorchScript export check (torch.jit.load) and .npy checks
  python3-torch python3-numpy
  # the Python client package (python/: import vsdm) and its stubs (grpc_python_plugin is in
  # protobuf-compiler-grpc)
  python3-grpcio python3-protobuf python3-yaml
  # a real Prometheus server for the observability integration test
  prometheus
  # misc used by tests and scripts
  curl procps
  # the CA and certificates of the TLS / mTLS test (tests/integration/tls_test.sh)
  openssl
)

source "$(dirname "$0")/apt-ensure.sh"
apt_ensure install-deps "${PKGS[@]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Point libblas.so.3 at OpenBLAS (the reference BLAS is ~17x slower for torch's linear layers).
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for alt in libblas.so.3 liblapack.so.3; do
  cand=$(update-alternatives --list "${alt}-${arch}" 2>/dev/null | grep -m1 openblas || true)
  if [ -n "$cand" ]; then
    cur=$(readlink -f "/etc/alternatives/${alt}-${arch}" 2>/dev/null || true)
    if [ "$cur" != "$(readlink -f "$cand")" ]; then
      $SUDO update-alternatives --set "${alt}-${arch}" "$cand" >/dev/null
      echo "install-deps: ${alt} -> $cand"
    fi
  fi
done
