#!/usr/bin/env bash
# Turn a clean Ubuntu 24.04 role host into a Dagster run host: Docker CE whose API listens
# on the private IP with mutual TLS (tlsverify) and a firewall that admits only the
# control plane; plus the run env file that run containers mount read-only.
#   usage (as root): setup-role-host.sh HOST_NAME PRIVATE_IP CONTROL_PLANE_IP CERT_DIR RUN_ENV
#   CERT_DIR: this host's dir from make-docker-certs.sh (ca.pem server-cert.pem server-key.pem)
#   RUN_ENV:  this host's filled-in <host>.run.env (from the .example next to this script)
set -euo pipefail
[ $# -eq 5 ] || { sed -n '2,8p' "$0"; exit 2; }
name=$1 ip=$2 control=$3 certs=$4 runenv=$5

apt-get update
apt-get install -y ca-certificates curl ufw
install -m 0755 -d /etc/apt/keyrings
curl -fsSL https://download.docker.com/linux/ubuntu/gpg -o /etc/apt/keyrings/docker.asc
chmod a+r /etc/apt/keyrings/docker.asc
echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] \
https://download.docker.com/linux/ubuntu noble stable" > /etc/apt/sources.list.d/docker.list
apt-get update
apt-get install -y docker-ce docker-ce-cli containerd.io

install -d -m 0700 /etc/docker/tls
install -m 0444 "$certs/ca.pem" /etc/docker/tls/ca.pem
install -m 0444 "$certs/server-cert.pem" /etc/docker/tls/server-cert.pem
install -m 0400 "$certs/server-key.pem" /etc/docker/tls/server-key.pem
cat > /etc/docker/daemon.json <<JSON
{
  "hosts": ["unix:///var/run/docker.sock", "tcp://${ip}:2376"],
  "tls": true,
  "tlsverify": true,
  "tlscacert": "/etc/docker/tls/ca.pem",
  "tlscert": "/etc/docker/tls/server-cert.pem",
  "tlskey": "/etc/docker/tls/server-key.pem",
  "log-driver": "json-file",
  "log-opts": {"max-size": "50m", "max-file": "5"},
  "labels": ["unde.host=${name}"]
}
JSON
# daemon.json "hosts" conflicts with the unit's -H fd://
install -d /etc/systemd/system/docker.service.d
printf '[Service]\nExecStart=\nExecStart=/usr/bin/dockerd --containerd=/run/containerd/containerd.sock\n' \
  > /etc/systemd/system/docker.service.d/override.conf
systemctl daemon-reload
systemctl restart docker

# Run env file: read by uid 10001 (the image's user) only, mounted read-only per run.
install -d -m 0755 /etc/unde
install -m 0400 -o 10001 -g 10001 "$runenv" /etc/unde/run.env

ufw allow OpenSSH
ufw allow from "$control" to "$ip" port 2376 proto tcp
ufw allow from 10.1.0.0/16 to any port 9100 proto tcp   # node_exporter, as before
ufw --force enable
echo "role host $name ready: dockerd tlsverify on ${ip}:2376 (control plane $control only)"
