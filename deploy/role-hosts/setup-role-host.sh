#!/usr/bin/env bash
# Turn a clean Ubuntu 24.04 host into a Dagster run host: Docker CE (with the compose and
# buildx plugins) whose API listens on the private IP with mutual TLS (tlsverify) and a
# firewall that admits only the control plane; the run env file (and the proxy's CA) that
# run containers mount read-only; an hourly timer removing run containers a week after
# they stopped. Also for the control plane itself (NAME control, PRIVATE_IP = CONTROL_IP):
# it is the orchestrator host of runs spanning roles.
#   usage (as root): setup-role-host.sh HOST_NAME PRIVATE_IP CONTROL_PLANE_IP CERT_DIR RUN_ENV
#   CERT_DIR: this host's dir from make-docker-certs.sh (ca.pem server-cert.pem server-key.pem)
#   RUN_ENV:  this host's filled-in <host>.run.env (from the .example next to this script)
#   env PROXY_CA=FILE: the proxy's root CA (brightdata_root_ca_44445.crt), required when
#     RUN_ENV sets PROXY_CA_BUNDLE; installed in /etc/unde/proxy-ca/ (see deploy/README.md)
#   env RETENTION_DAYS (7): how long stopped run containers (and their logs) are kept
set -euo pipefail
[ $# -eq 5 ] || { sed -n '2,14p' "$0"; exit 2; }
name=$1 ip=$2 control=$3 certs=$4 runenv=$5
here=$(cd "$(dirname "$0")" && pwd)
retention=${RETENTION_DAYS:-7}
proxy_ca_dir=/etc/unde/proxy-ca      # mounted at /run/unde/proxy-ca in run containers
die() { echo "setup-role-host: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
for f in "$certs/ca.pem" "$certs/server-cert.pem" "$certs/server-key.pem" "$runenv" \
         "$here/prune-run-containers.sh"; do
  [ -f "$f" ] || die "$f not found"
done
[[ $retention =~ ^[1-9][0-9]*$ ]] || die "RETENTION_DAYS must be a positive number of days"
# PROXY_CA_BUNDLE in the run env names the CA inside run containers; its file lives here.
bundle=$(sed -n 's/^[[:space:]]*PROXY_CA_BUNDLE=//p' "$runenv" | tail -n 1)
if [ -n "$bundle" ]; then
  case $bundle in /run/unde/proxy-ca/?*) ;; *)
    die "PROXY_CA_BUNDLE=$bundle: must be under /run/unde/proxy-ca/ (where $proxy_ca_dir is mounted)" ;;
  esac
  ca_name=${bundle#/run/unde/proxy-ca/}
  if [ -z "${PROXY_CA:-}" ] && [ ! -f "$proxy_ca_dir/$ca_name" ]; then
    die "$runenv sets PROXY_CA_BUNDLE=$bundle: pass the proxy's CA as PROXY_CA=FILE"
  fi
fi

# Docker CE from Docker's repository; Ubuntu's docker.io/docker-compose (1.29 rejects the
# compose file's `name:`) conflict with it and go first. Images and volumes are kept.
for pkg in docker.io docker-doc docker-compose docker-compose-v2 podman-docker containerd runc; do
  if dpkg -s "$pkg" >/dev/null 2>&1; then apt-get remove -y "$pkg"; fi
done
apt-get update
apt-get install -y ca-certificates curl ufw openssl
install -m 0755 -d /etc/apt/keyrings
curl -fsSL https://download.docker.com/linux/ubuntu/gpg -o /etc/apt/keyrings/docker.asc
chmod a+r /etc/apt/keyrings/docker.asc
echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] \
https://download.docker.com/linux/ubuntu noble stable" > /etc/apt/sources.list.d/docker.list
apt-get update
apt-get install -y docker-ce docker-ce-cli containerd.io docker-buildx-plugin \
  docker-compose-plugin

install -d -m 0700 /etc/docker/tls
install -m 0444 "$certs/ca.pem" /etc/docker/tls/ca.pem
install -m 0444 "$certs/server-cert.pem" /etc/docker/tls/server-cert.pem
install -m 0400 "$certs/server-key.pem" /etc/docker/tls/server-key.pem
# Logs: json-file (what `docker logs` reads), at most 20 MB live + 2 rotated (compressed)
# files per container; live-restore keeps run containers running through a dockerd
# restart or upgrade (run monitoring would otherwise see every running run die).
cat > /etc/docker/daemon.json <<JSON
{
  "hosts": ["unix:///var/run/docker.sock", "tcp://${ip}:2376"],
  "tls": true,
  "tlsverify": true,
  "tlscacert": "/etc/docker/tls/ca.pem",
  "tlscert": "/etc/docker/tls/server-cert.pem",
  "tlskey": "/etc/docker/tls/server-key.pem",
  "log-driver": "json-file",
  "log-opts": {"max-size": "20m", "max-file": "3", "compress": "true"},
  "live-restore": true,
  "labels": ["unde.host=${name}"]
}
JSON
# daemon.json "hosts" conflicts with the unit's -H fd://
install -d /etc/systemd/system/docker.service.d
printf '[Service]\nExecStart=\nExecStart=/usr/bin/dockerd --containerd=/run/containerd/containerd.sock\n' \
  > /etc/systemd/system/docker.service.d/override.conf
systemctl daemon-reload
systemctl restart docker
docker compose version
docker buildx version

# Run env file: read by uid 10001 (the image's user) only, mounted read-only per run.
install -d -m 0755 /etc/unde
install -m 0400 -o 10001 -g 10001 "$runenv" /etc/unde/run.env
# The proxy's CA (public, not a secret), PEM: Python's ssl reads PEM only.
if [ -n "${PROXY_CA:-}" ]; then
  [ -n "$bundle" ] || die "PROXY_CA given but $runenv sets no PROXY_CA_BUNDLE"
  install -d -m 0755 "$proxy_ca_dir"
  if openssl x509 -in "$PROXY_CA" -noout 2>/dev/null; then
    install -m 0444 "$PROXY_CA" "$proxy_ca_dir/$ca_name"
  elif openssl x509 -inform DER -in "$PROXY_CA" -noout 2>/dev/null; then
    openssl x509 -inform DER -in "$PROXY_CA" -out "$proxy_ca_dir/$ca_name"
    chmod 0444 "$proxy_ca_dir/$ca_name"
  else
    die "PROXY_CA=$PROXY_CA is not an X.509 certificate (PEM or DER)"
  fi
  openssl x509 -in "$proxy_ca_dir/$ca_name" -noout -subject -enddate
fi

# Retention: stopped run containers (and their logs) go 7 days after they stopped.
install -m 0755 "$here/prune-run-containers.sh" /usr/local/sbin/unde-prune-run-containers
cat > /etc/systemd/system/unde-prune-run-containers.service <<UNIT
[Unit]
Description=Remove Dagster run containers stopped more than ${retention} days ago
Requires=docker.service
After=docker.service

[Service]
Type=oneshot
Environment=RETENTION_DAYS=${retention}
ExecStart=/usr/local/sbin/unde-prune-run-containers
UNIT
cat > /etc/systemd/system/unde-prune-run-containers.timer <<'UNIT'
[Unit]
Description=Hourly removal of old Dagster run containers

[Timer]
OnCalendar=hourly
RandomizedDelaySec=10m
Persistent=true

[Install]
WantedBy=timers.target
UNIT
systemctl daemon-reload
systemctl enable --now unde-prune-run-containers.timer

ufw allow OpenSSH
ufw allow from "$control" to "$ip" port 2376 proto tcp
if [ "$ip" = "$control" ]; then
  # The control plane's daemon dials its own engine from its compose network (Docker's
  # default address pools), not from the private IP.
  ufw allow from 172.16.0.0/12 to "$ip" port 2376 proto tcp
fi
ufw allow from 10.1.0.0/16 to any port 9100 proto tcp   # node_exporter, as before
ufw --force enable
echo "host $name ready: dockerd tlsverify on ${ip}:2376 (control plane $control only)," \
  "compose $(docker compose version --short), run containers kept ${retention} days"
