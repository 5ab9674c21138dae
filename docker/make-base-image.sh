#!/usr/bin/env bash
# Makes the base image the Dockerfiles name, `debian:bookworm-slim`, without a registry: a
# debootstrap --variant=minbase of Debian 12, slimmed the way the official image is (no docs, man
# pages or locales; apt cleans its cache; no apt lists), imported into the engine at $DOCKER_HOST.
# The root file system is cached as a tarball, so a second run only imports it (seconds).
# On a machine that can pull from Docker Hub, `docker pull debian:bookworm-slim` does the same.
#
# usage: docker/make-base-image.sh [--cache DIR] [--tag NAME] [--refresh]
#   --cache DIR   where the tarball lives (default build/docker-base)
#   --tag NAME    image name (default debian:bookworm-slim)
#   --refresh     debootstrap again even if the tarball exists
#   VSDM_DEBIAN_MIRROR   the Debian mirror (default http://deb.debian.org/debian)
#   DOCKER        the docker client (default /usr/bin/docker, else docker)
# Needs root (debootstrap chroots). Prints the image id.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=build/docker-base
tag=debian:bookworm-slim
refresh=0
while [ $# -gt 0 ]; do
  case $1 in
    --cache) cache=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --refresh) refresh=1; shift ;;
    *) echo "make-base-image: unknown argument $1" >&2; exit 2 ;;
  esac
done
mirror=${VSDM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
docker=${DOCKER:-$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker)}
tarball=$cache/bookworm-minbase.tar
mkdir -p "$cache"

if [ "$refresh" = 1 ] || [ ! -s "$tarball" ]; then
  root=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  t0=$SECONDS
  echo "make-base-image: debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" > "$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log"; exit 1; }
  # What the official debian:*-slim images do (debuerreotype --slimify, docker-* apt configs).
  cat > "$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
  cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
  echo 'Acquire::Languages "none";' > "$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' > "$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -f "$root/etc/apt/sources.list"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{man,info,lintian,linda}/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
    "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  : > "$root/etc/machine-id"
  echo bookworm-slim > "$root/etc/hostname"
  tar --numeric-owner --xattrs -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  echo "make-base-image: rootfs $(du -sh "$root" | cut -f1), tarball $(du -h "$tarball" | cut -f1), $((SECONDS - t0)) s"
fi
t0=$SECONDS
"$docker" import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --message "debootstrap --variant=minbase bookworm (vsdm docker/make-base-image.sh)" "$tarball" "$tag" > /dev/null
echo "make-base-image: imported $tag ($("$docker" image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'), $((SECONDS - t0)) s)"
