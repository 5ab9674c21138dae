#!/usr/bin/env bash
# Writes the inputs of the Secrets the overlays generate (secrets/kustomization.yaml) into
# secrets/files/ (git-ignored): random bearer tokens, a CA and the coordinator's certificate.
#   deploy/k8s/make-secrets.sh [--namespace NS] [--out DIR] [--force] [--days N]
# Files (mode 0600):
#   tokens        the coordinator's --auth-tokens: an admin token and the agents' worker token
#   worker-token  the agents' --token-file (principal vsdm-workers, role worker)
#   admin-token   yours, for vsdmctl --token-file (only its line in tokens goes into the cluster)
#   ca.crt ca.key the CA (EC P-256); ca.key never goes into the cluster: keep it or delete it
#   tls.crt tls.key  the coordinator's certificate, SANs vsdm-coordinator, its namespaced and
#                    cluster-local names, the headless pod name, localhost and 127.0.0.1
#                    (kubectl port-forward)
# Refuses to overwrite existing files without --force. Needs openssl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=vsdm
out="$here/secrets/files"
force=0
days=825
while [ $# -gt 0 ]; do
  case $1 in
    --namespace) ns=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --force) force=1; shift ;;
    --days) days=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "make-secrets.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v openssl > /dev/null || { echo "make-secrets.sh: needs openssl" >&2; exit 2; }
mkdir -p "$out"
for f in tokens worker-token admin-token ca.crt ca.key tls.crt tls.key; do
  if [ -e "$out/$f" ] && [ $force -eq 0 ]; then
    echo "make-secrets.sh: $out/$f exists; pass --force to replace every file" >&2
    exit 1
  fi
done
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

admin=$(openssl rand -hex 32)
worker=$(openssl rand -hex 32)
printf '# TOKEN PRINCIPAL ROLE (made by make-secrets.sh)\n%s admin admin\n%s vsdm-workers worker\n' \
  "$admin" "$worker" > "$tmp/tokens"
echo "$worker" > "$tmp/worker-token"
echo "$admin" > "$tmp/admin-token"

svc=vsdm-coordinator
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=vsdm-ca" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2> /dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$svc" \
  -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2> /dev/null
sans="DNS:$svc,DNS:$svc.$ns,DNS:$svc.$ns.svc,DNS:$svc.$ns.svc.cluster.local"
sans="$sans,DNS:$svc-0.$svc-headless.$ns.svc.cluster.local,DNS:localhost,IP:127.0.0.1"
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' \
  "$sans" > "$tmp/tls.ext"
openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
  -days "$days" -extfile "$tmp/tls.ext" -out "$tmp/tls.crt" 2> /dev/null
openssl verify -CAfile "$tmp/ca.crt" "$tmp/tls.crt" > /dev/null

for f in tokens worker-token admin-token ca.crt ca.key tls.crt tls.key; do
  install -m 0600 "$tmp/$f" "$out/$f"
done
echo "make-secrets.sh: wrote tokens, worker-token, admin-token, ca.crt, ca.key, tls.crt, tls.key to $out"
echo "  namespace $ns; certificate SANs $sans"
