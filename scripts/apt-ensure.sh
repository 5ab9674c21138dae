# Sourced by the install scripts: apt_ensure NAME PKG... installs the packages that are not
# installed yet (as root, or through sudo), quietly, without recommends; a no-op when all are.
apt_ensure() {
  local name=$1 sudo="" p
  shift
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  local missing=()
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "$name: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # wait for another apt (a parallel install) rather than fail on its lock
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "$name: all $# packages present"
  fi
}
