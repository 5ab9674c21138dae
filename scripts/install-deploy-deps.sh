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
# node and npm may come from outside apt (this machine has /usr/bin/node v20); keep those.
pkgs=()
for p in "${PKGS[@]}"; do
  if [[ $p == nodejs || $p == npm ]] && command -v node > /dev/null && command -v npm > /dev/null; then continue; fi
  pkgs+=("$p")
done
source scripts/apt-ensure.sh
apt_ensure install-deploy-deps "${pkgs[@]}"
