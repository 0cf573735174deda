#!/usr/bin/env bash
# Make a private CA, one dockerd server certificate per role host and the control plane's
# client certificate. Run on an admin machine; copy each host's dir to /etc/docker/tls.
#   usage: make-docker-certs.sh OUT_DIR NAME=IP [NAME=IP ...]
#   e.g.:  CLIENT_KEY_OWNER=10001 make-docker-certs.sh ./certs collage=10.1.0.16 scraper=10.1.0.3
# Out: OUT/ca.pem, OUT/ca-key.pem (keep offline), OUT/NAME/{ca,server-cert,server-key}.pem,
#      OUT/client/{ca,cert,key}.pem (for the control plane).
# Env: CA_DAYS (default 3650: 10 years), CERT_DAYS (default 730: 2 years, the leaves);
#      CLIENT_KEY_OWNER=UID[:GID] chowns OUT/client to the user the daemon runs as (10001,
#      the images' `dagster` user; needs root). Keys are 0600, certificates 0444.
# An existing OUT/ca.pem is reused (new or renewed leaves under the same CA) if it is a CA
# by this script's profile and outlives the new leaves; otherwise the script stops.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,12p' "$0"; exit 2; }
out=$1; shift
ca_days=${CA_DAYS:-3650}
days=${CERT_DAYS:-730}
owner=${CLIENT_KEY_OWNER:-}
die() { echo "make-docker-certs: $*" >&2; exit 1; }
for n in "$ca_days" "$days"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "CA_DAYS/CERT_DAYS must be positive whole days, got '$n'"
done
[ "$ca_days" -gt "$days" ] || die "CA_DAYS ($ca_days) must exceed CERT_DAYS ($days)"
if [ -n "$owner" ]; then
  [[ $owner =~ ^[0-9]+(:[0-9]+)?$ ]] || die "CLIENT_KEY_OWNER must be UID or UID:GID, got '$owner'"
  [[ $owner == *:* ]] || owner="$owner:$owner"
  [ "$(id -u)" -eq 0 ] || die "CLIENT_KEY_OWNER needs root (chown); or install the key on the \
control plane with: install -m 0600 -o ${owner%%:*} -g ${owner#*:} key.pem /etc/unde/docker-tls/"
fi
for pair in "$@"; do  # validate every argument before writing anything
  [[ $pair == *=* ]] || die "'$pair' is not NAME=IP"
  name=${pair%%=*}; ip=${pair#*=}
  [[ $name =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]] || die "'$name' is not a host name (a-z 0-9 -)"
  [ "$name" != client ] || die "'client' is the control plane's directory, not a host name"
  [[ $ip =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]] || die "'$ip' ($name) is not an IPv4 address"
done

umask 077
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The CA: may sign certificates only (keyCertSign, cRLSign; no leaf use), one level deep.
cat > "$tmp/ca.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca
[dn]
CN = unde-docker-ca
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF
if [ ! -f "$out/ca.pem" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca-key.pem"
  openssl req -x509 -new -config "$tmp/ca.cnf" -key "$out/ca-key.pem" -sha256 \
    -days "$ca_days" -out "$out/ca.pem"
  chmod 0444 "$out/ca.pem"
else
  [ -f "$out/ca-key.pem" ] || die "$out/ca.pem exists but $out/ca-key.pem does not"
  openssl x509 -in "$out/ca.pem" -noout -ext keyUsage 2>/dev/null | grep -q 'Certificate Sign' \
    || die "$out/ca.pem has no keyUsage keyCertSign (an older CA): move $out away and make \
every host's certificates again"
  openssl x509 -in "$out/ca.pem" -noout -checkend $((days * 86400)) >/dev/null \
    || die "$out/ca.pem expires within CERT_DAYS ($days days): make a new CA (move $out away)"
fi

sign() {  # dir cn profile(server|client) [ip]
  local dir=$1 cn=$2 profile=$3 ip=${4:-}
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid, issuer"
    if [ "$profile" = server ]; then
      echo "extendedKeyUsage = serverAuth"
      echo "subjectAltName = DNS:$cn, IP:$ip"
    else
      echo "extendedKeyUsage = clientAuth"
    fi
  } > "$tmp/ext.cnf"
  openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/key.pem"
  openssl req -new -key "$tmp/key.pem" -subj "/CN=$cn" -out "$tmp/csr.pem"
  openssl x509 -req -in "$tmp/csr.pem" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 -extfile "$tmp/ext.cnf" \
    -out "$tmp/cert.pem" 2>/dev/null
  mkdir -p "$dir"
  install -m 0444 "$out/ca.pem" "$dir/ca.pem"
}
for pair in "$@"; do
  name=${pair%%=*}; ip=${pair#*=}
  sign "$out/$name" "$name" server "$ip"
  install -m 0600 "$tmp/key.pem" "$out/$name/server-key.pem"
  install -m 0444 "$tmp/cert.pem" "$out/$name/server-cert.pem"
done
sign "$out/client" "dagster-control-plane" client
install -m 0600 "$tmp/key.pem" "$out/client/key.pem"
install -m 0444 "$tmp/cert.pem" "$out/client/cert.pem"
chmod 0600 "$out/ca-key.pem"
if [ -n "$owner" ]; then  # the daemon (uid 10001) reads the client key; nobody else
  chown -R "$owner" "$out/client"
fi
for pair in "$@"; do
  name=${pair%%=*}
  openssl verify -x509_strict -purpose sslserver -CAfile "$out/ca.pem" \
    "$out/$name/server-cert.pem" >/dev/null
done
openssl verify -x509_strict -purpose sslclient -CAfile "$out/ca.pem" "$out/client/cert.pem" \
  >/dev/null
echo "certificates in $out (CA until $(openssl x509 -in "$out/ca.pem" -noout -enddate | cut -d= -f2);" \
  "leaves for $days days)"
