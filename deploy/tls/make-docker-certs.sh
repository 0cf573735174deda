#!/usr/bin/env bash
# Make a private CA, one dockerd server certificate per role host and the control plane's
# client certificate. Run once on an admin machine; copy each host's dir to /etc/docker/tls.
#   usage: make-docker-certs.sh OUT_DIR NAME=IP [NAME=IP ...]
#   e.g.:  make-docker-certs.sh ./certs collage=10.1.0.16 ximilar-sync=10.1.0.11
# Out: OUT/ca.pem, OUT/ca-key.pem (keep offline), OUT/NAME/{ca,server-cert,server-key}.pem,
#      OUT/client/{ca,cert,key}.pem (for the control plane).
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,7p' "$0"; exit 2; }
out=$1; shift
days=${CERT_DAYS:-825}
umask 077
mkdir -p "$out"
if [ ! -f "$out/ca.pem" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca-key.pem"
  openssl req -x509 -new -key "$out/ca-key.pem" -sha256 -days "$days" \
    -subj "/CN=unde-docker-ca" -out "$out/ca.pem"
fi
sign() {  # dir cn ext
  openssl ecparam -name prime256v1 -genkey -noout -out "$1/key.tmp"
  openssl req -new -key "$1/key.tmp" -subj "/CN=$2" -out "$1/csr.tmp"
  openssl x509 -req -in "$1/csr.tmp" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" \
    -CAcreateserial -days "$days" -sha256 -extfile "$1/ext.tmp" -out "$1/cert.tmp" 2>/dev/null
  rm -f "$1/csr.tmp" "$1/ext.tmp"
  cp "$out/ca.pem" "$1/ca.pem"
}
for pair in "$@"; do
  name=${pair%%=*}; ip=${pair#*=}
  dir="$out/$name"; mkdir -p "$dir"
  printf 'subjectAltName=DNS:%s,IP:%s\nextendedKeyUsage=serverAuth\n' "$name" "$ip" > "$dir/ext.tmp"
  sign "$dir" "$name"
  mv "$dir/key.tmp" "$dir/server-key.pem"; mv "$dir/cert.tmp" "$dir/server-cert.pem"
done
dir="$out/client"; mkdir -p "$dir"
printf 'extendedKeyUsage=clientAuth\n' > "$dir/ext.tmp"
sign "$dir" "dagster-control-plane"
mv "$dir/key.tmp" "$dir/key.pem"; mv "$dir/cert.tmp" "$dir/cert.pem"
chmod 0444 "$out"/*/ca.pem "$out"/*/*cert.pem
echo "certificates in $out"
