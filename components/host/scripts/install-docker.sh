#!/usr/bin/env bash
# Install Docker Engine at a pinned version. Idempotent: a host that already has
# the requested version installed is left alone.
#
# usage: install-docker.sh PACKAGE [VERSION]
#   PACKAGE  docker-ce (Docker's apt repository) or docker.io (the distribution's)
#   VERSION  upstream version such as 29.2.0; required for docker-ce
set -euo pipefail

package=${1:?usage: install-docker.sh PACKAGE [VERSION]}
version=${2:-}
# Docker's release signing key (https://download.docker.com/linux/debian/gpg).
docker_key_fingerprint=9DC858229FC7DD38854AE2D88D81803C0EBFCD88

export DEBIAN_FRONTEND=noninteractive
# apt and dpkg talk on stderr: stdout (kept in the Pulumi state) is the one summary line.
apt_get() { apt-get -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confold -qq "$@" >&2; }

installed_version() {
  # dpkg-query exits 1 for a package it has never seen: not an error here (pipefail).
  { dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null || true; } | awk '$3 == "installed" { print $4 }'
}

# True when a Debian version string (e.g. 5:29.2.0-1~debian.12~bookworm) is the
# requested upstream version; any version matches when none was requested.
matches() {
  [ -z "$version" ] && return 0
  local v=${1#*:}
  [[ $v == "$version" || $v == "$version"-* || $v == "$version"+* || $v == "$version"~* ]]
}

candidate() {
  apt-cache madison "$1" | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' | while read -r v; do
    if matches "$v"; then echo "$v"; break; fi
  done
}

setup_docker_repository() {
  # shellcheck disable=SC1091
  . /etc/os-release
  local key=/etc/apt/keyrings/docker.asc list=/etc/apt/sources.list.d/docker.sources
  if ! command -v curl >/dev/null || ! command -v gpg >/dev/null; then
    apt_get update
    apt_get install ca-certificates curl gnupg
  fi
  if [ ! -s "$key" ]; then
    install -d -m 0755 /etc/apt/keyrings
    local tmp
    tmp=$(mktemp)
    curl -fsSL --max-time 60 --retry 3 "https://download.docker.com/linux/${ID}/gpg" -o "$tmp"
    local fpr
    fpr=$(gpg --show-keys --with-colons "$tmp" | awk -F: '$1 == "fpr" { print $10; exit }')
    if [ "$fpr" != "$docker_key_fingerprint" ]; then
      rm -f "$tmp"
      echo "Docker's apt key has fingerprint '$fpr', expected $docker_key_fingerprint" >&2
      exit 1
    fi
    install -m 0644 "$tmp" "$key"
    rm -f "$tmp"
  fi
  local want
  want=$(printf 'Types: deb\nURIs: https://download.docker.com/linux/%s\nSuites: %s\nComponents: stable\nSigned-By: %s\n' \
    "$ID" "$VERSION_CODENAME" "$key")
  if [ ! -f "$list" ] || [ "$(cat "$list")" != "$want" ]; then
    printf '%s\n' "$want" > "$list.tmp"
    mv -f "$list.tmp" "$list"
  fi
}

case $package in
  docker-ce)
    [ -n "$version" ] || { echo "docker-ce needs a version (dockerVersion)" >&2; exit 2; }
    main=docker-ce
    ;;
  docker.io)
    main=docker.io
    ;;
  *)
    echo "unknown Docker package '$package': expected docker-ce or docker.io" >&2
    exit 2
    ;;
esac

current=$(installed_version "$main")
if [ -n "$current" ] && matches "$current"; then
  apt-mark hold "$main" >/dev/null
  echo "unchanged: $main $current"
  exit 0
fi

if [ "$package" = docker-ce ]; then
  setup_docker_repository
fi
apt_get update
exact=$(candidate "$main")
if [ -z "$exact" ]; then
  echo "no $main version ${version:-(any)} in the configured apt sources; available:" >&2
  apt-cache madison "$main" | awk -F'|' '{ print "  " $2 }' | head -n 20 >&2
  exit 1
fi

apt-mark unhold "$main" >/dev/null 2>&1 || true
if [ "$package" = docker-ce ]; then
  apt_get install --allow-change-held-packages "docker-ce=$exact" "docker-ce-cli=$exact" \
    containerd.io docker-buildx-plugin docker-compose-plugin
  apt-mark hold docker-ce docker-ce-cli >/dev/null
else
  apt_get install --allow-change-held-packages "docker.io=$exact"
  apt-mark hold docker.io >/dev/null
fi
echo "installed: $main $exact (was: ${current:-none})"
