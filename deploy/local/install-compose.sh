#!/usr/bin/env bash
# Docker Compose v2 for a machine whose distribution ships only v1 (Debian bookworm's
# docker-compose 1.29 rejects the control plane's compose file: `name:`, profiles, health
# conditions). Takes Debian trixie's docker-compose package (a static Go binary), checked
# against trixie's signed InRelease, and unpacks only the binary into $DEST (default
# .local/tools); nothing is installed system-wide. Prints the binary's path.
# An operator's host gets Docker's own docker-compose-plugin instead (deploy/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST="${DEST:-$PWD/.local/tools}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=trixie
PACKAGE=docker-compose
BIN="$DEST/docker-compose"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

if [ -x "$BIN" ] && "$BIN" version --short >/dev/null 2>&1; then
  echo "$BIN"; exit 0
fi
mkdir -p "$DEST"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
arch="$(dpkg --print-architecture)"

curl -fsS "$MIRROR/dists/$SUITE/InRelease" -o "$work/InRelease"
gpgv --keyring "$KEYRING" "$work/InRelease" 2>/dev/null \
  || { echo "trixie's InRelease does not verify against $KEYRING" >&2; exit 1; }
index="main/binary-$arch/Packages.xz"
want="$(awk -v f="$index" '/^SHA256:/{s=1;next} /^[A-Z]/{s=0} s && $3==f {print $1}' "$work/InRelease")"
curl -fsS "$MIRROR/dists/$SUITE/$index" -o "$work/Packages.xz"
echo "$want  $work/Packages.xz" | sha256sum -c --quiet -
xz -d "$work/Packages.xz"
awk -v p="$PACKAGE" '$0=="Package: " p {s=1} s && /^$/ {exit} s' "$work/Packages" >"$work/stanza"
file="$(awk '/^Filename:/{print $2}' "$work/stanza")"
sum="$(awk '/^SHA256:/{print $2}' "$work/stanza")"
[ -n "$file" ] || { echo "no $PACKAGE in $SUITE for $arch" >&2; exit 1; }
curl -fsS "$MIRROR/$file" -o "$work/pkg.deb"
echo "$sum  $work/pkg.deb" | sha256sum -c --quiet -
dpkg-deb -x "$work/pkg.deb" "$work/root"
install -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" "$BIN"
"$BIN" version --short >/dev/null
echo "$BIN"
