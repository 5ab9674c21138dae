#!/usr/bin/env bash
# Installs the real deployment counterparts the deploy tests run against (tests/deploy/), from
# Debian's archive and npm: a Docker engine with compose, debootstrap (the offline base image),
# Slurm with munge, network-namespace tooling (iproute2, iptables, nftables), and the npm Kubernetes
# schema validator and Dockerfile linter (into build/deploy-npm/). Not needed to build or run vsdm
# itself, so the quickstart's install-deps.sh does not call it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(
  docker.io docker-compose containerd runc tini debootstrap
  slurm-wlm slurmctld slurmd slurm-client munge
  iproute2 iptables nftables iputils-ping util-linux
  openssl curl nodejs npm
)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# node and npm may come from outside apt (this machine has /usr/bin/node v20); keep those.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deploy-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deploy-deps: all ${#PKGS[@]} packages present"
fi
