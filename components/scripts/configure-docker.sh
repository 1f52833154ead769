#!/usr/bin/env bash
# Install the Docker daemon's configuration and restart Docker only when it changed.
#
# usage: base64 TAR | configure-docker.sh
#   stdin: a base64-encoded tar of files relative to / (etc/docker/daemon.json,
#   etc/docker/tls/*.pem, etc/systemd/system/docker.service.d/*.conf), each with
#   the mode it must have; every file is owned by root:root on the host.
#
# Every file is validated first, then written atomically (temp file in the same
# directory, then rename). When nothing changed and Docker runs, nothing happens.
# When Docker does not come back with the new configuration, the previous files
# are restored, Docker is started again with them and the step fails.
set -euo pipefail
umask 077

work=$(mktemp -d)
backup=
# shellcheck disable=SC2317  # called through the trap
cleanup() { rm -rf "$work"; [ -z "$backup" ] || rm -rf "$backup"; }
trap cleanup EXIT

base64 -d | tar -x --no-same-owner -C "$work"
mapfile -t files < <(cd "$work" && find . -type f -printf '%P\n' | sort)
[ ${#files[@]} -gt 0 ] || { echo "no files on stdin" >&2; exit 2; }
for rel in "${files[@]}"; do
  case $rel in
    etc/docker/*|etc/systemd/system/docker.service.d/*) ;;
    *) echo "refusing to write /$rel" >&2; exit 2 ;;
  esac
done

dockerd_bin=$(command -v dockerd || true)
[ -n "$dockerd_bin" ] || { echo "dockerd is not installed" >&2; exit 1; }
if [ -f "$work/etc/docker/daemon.json" ]; then
  if "$dockerd_bin" --help 2>&1 | grep -q -- '--validate'; then
    if ! out=$("$dockerd_bin" --validate --config-file "$work/etc/docker/daemon.json" 2>&1); then
      echo "daemon.json rejected by dockerd --validate; nothing was changed:" >&2
      echo "$out" >&2
      exit 1
    fi
  fi
fi

changed=()
for rel in "${files[@]}"; do
  mode=$(stat -c %a "$work/$rel")
  if [ -f "/$rel" ] && cmp -s "$work/$rel" "/$rel" && [ "$(stat -c %a:%u:%g "/$rel")" = "$mode:0:0" ]; then
    continue
  fi
  changed+=("$rel")
done

if [ ${#changed[@]} -eq 0 ] && systemctl is-active --quiet docker.service; then
  echo "unchanged"
  exit 0
fi

backup=$(mktemp -d)
for rel in "${changed[@]}"; do
  dest=/$rel
  install -d -m 0755 "$(dirname "$dest")"
  if [ -e "$dest" ]; then
    install -d "$backup/$(dirname "$rel")"
    cp -a "$dest" "$backup/$rel"
  fi
  tmp=$(mktemp "$(dirname "$dest")/.$(basename "$dest").XXXXXX")
  install -m "$(stat -c %a "$work/$rel")" -o root -g root "$work/$rel" "$tmp"
  mv -f "$tmp" "$dest"
done

docker_up() {
  systemctl daemon-reload
  systemctl reset-failed docker.service >/dev/null 2>&1 || true
  systemctl restart docker.service || return 1
  local _
  for _ in $(seq 1 60); do
    if docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  return 1
}

if docker_up; then
  echo "changed: ${changed[*]}; docker restarted"
  exit 0
fi

echo "docker did not start with the new configuration (${changed[*]}); restoring the previous one" >&2
journalctl -u docker.service --no-pager -n 20 >&2 2>/dev/null || true
for rel in "${changed[@]}"; do
  if [ -e "$backup/$rel" ]; then
    cp -a "$backup/$rel" "/$rel.delivery-restore"
    mv -f "/$rel.delivery-restore" "/$rel"
  else
    rm -f "/$rel"
  fi
done
if docker_up; then
  echo "docker runs again with the previous configuration" >&2
else
  echo "docker does not start with the previous configuration either" >&2
fi
exit 1
