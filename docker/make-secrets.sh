#!/usr/bin/env bash
# Writes what docker/compose.yaml mounts: bearer tokens and a TLS CA with the coordinator's
# certificate and a client certificate per agent (EC P-256, openssl).
#   tokens                  the coordinator's --auth-tokens: admin, user, agent-1..N (role worker)
#   admin.token user.token  for vsdmctl (--token-file); agent-N.token for agent N
#   ca.pem  server.pem/.key (CN and SAN coordinator, plus localhost and 127.0.0.1, so the
#           published port verifies too)  agent-N.pem/.key (clientAuth, for mTLS)
# Files the containers read are owned by the images' user (uid 10001) when run as root, mode 0400;
# ca.key stays with the caller. Refuses to overwrite an existing directory's files.
# usage: docker/make-secrets.sh DIR [AGENTS (default 3)] [DAYS (default 30)]
set -euo pipefail
dir=${1:?usage: make-secrets.sh DIR [AGENTS] [DAYS]}
agents=${2:-3}
days=${3:-30}
uid=10001
[ ! -e "$dir/tokens" ] || { echo "make-secrets: $dir/tokens exists; remove $dir first" >&2; exit 1; }
mkdir -p "$dir"
chmod 0755 "$dir"
cd "$dir"
umask 077
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2> /dev/null; }
sign() {  # sign NAME CN EXT
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$1.ext" -out "$1.pem" 2> /dev/null
  rm -f "$1.csr" "$1.ext"
}
key ca.key
openssl req -x509 -new -key ca.key -subj "/CN=vsdm-ca" -days "$days" -out ca.pem
sign server coordinator "subjectAltName=DNS:coordinator,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
tok() { openssl rand -hex 24; }
admin=$(tok); user=$(tok)
echo "$admin" > admin.token
echo "$user" > user.token
{
  echo "$admin admin admin"
  echo "$user user user"
} > tokens
for i in $(seq 1 "$agents"); do
  t=$(tok)
  echo "$t" > "agent-$i.token"
  echo "$t agent-$i worker" >> tokens
  sign "agent-$i" "agent-$i" "extendedKeyUsage=clientAuth"
done
rm -f ca.srl
openssl verify -CAfile ca.pem server.pem agent-*.pem > /dev/null
chmod 0400 ./*.key ./*.token tokens
chmod 0444 ./*.pem
if [ "$(id -u)" = 0 ]; then
  chown "$uid:$uid" tokens server.key agent-*.key agent-*.token
else
  echo "make-secrets: not root: tokens and keys are yours (mode 0400); the containers run as uid $uid and" \
       "must read tokens, server.key, agent-*.key and agent-*.token: chown them to $uid" >&2
fi
echo "make-secrets: $dir: tokens (admin, user, $agents agents), CA, server and $agents agent certificates, $days days"
