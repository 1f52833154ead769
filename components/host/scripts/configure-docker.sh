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
# Refused before anything is touched (Docker keeps running as it is): a daemon.json
# that `dockerd --validate` rejects (Docker >= 23; Debian's 20.10 has no --validate)
# and a tcp:// listener on an address no interface of this host has (any version).
# When Docker does not come back with the new configuration for another reason (the
# port is taken, ...), the previous files are restored, Docker is started again with
# them and the step fails.
#
# What the running daemon was started with is recorded in $STATE (the checksum of the
# files and their modes), written only after Docker came back with them. A run that
# was interrupted between writing the files and restarting Docker left the files in
# place but not that record: the next run sees the difference and restarts Docker
# ("completing an interrupted change") instead of saying "unchanged".
set -euo pipefail
umask 077

work=$(mktemp -d)
backup=
# shellcheck disable=SC2317  # called through the trap
cleanup() { rm -rf "$work"; [ -z "$backup" ] || rm -rf "$backup"; }
trap cleanup EXIT
STATE=/var/lib/delivery/docker-config.applied

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

# dockerd cannot start when a tcp:// listener's address is not on this host ("bind: cannot
# assign requested address"), and --validate does not check that: check it here.
# (daemon.json is the program's own rendering: one "tcp://ADDR:PORT" or "tcp://[ADDR]:PORT"
# string per listener.)
if [ -f "$work/etc/docker/daemon.json" ] && command -v ip >/dev/null; then
  mapfile -t have < <(ip -o addr show | awk '{ sub(/\/.*/, "", $4); print $4 }')
  while read -r addr; do
    [ -n "$addr" ] || continue
    case $addr in 0.0.0.0|::) continue ;; esac
    found=
    for a in "${have[@]}"; do [ "$a" != "$addr" ] || found=1; done
    if [ -z "$found" ]; then
      echo "daemon.json listens on $addr, an address this host does not have (it has: ${have[*]}); nothing was changed" >&2
      exit 1
    fi
  done < <(grep -oE '"tcp://[^"]+"' "$work/etc/docker/daemon.json" \
    | sed -E 's#^"tcp://##; s#"$##; s#:[0-9]+$##; s#^\[(.*)\]$#\1#')
fi

# The checksum of what this run installs: every file's path, mode and content.
wanted=$(cd "$work" && for rel in "${files[@]}"; do
  printf '%s %s %s\n' "$rel" "$(stat -c %a "$rel")" "$(sha256sum < "$rel" | cut -c1-64)"
done | sha256sum | cut -c1-64)
applied=$(cat "$STATE" 2>/dev/null || true)

changed=()
for rel in "${files[@]}"; do
  mode=$(stat -c %a "$work/$rel")
  if [ -f "/$rel" ] && cmp -s "$work/$rel" "/$rel" && [ "$(stat -c %a:%u:%g "/$rel")" = "$mode:0:0" ]; then
    continue
  fi
  changed+=("$rel")
done

# shellcheck disable=SC2317  # called further down
record_applied() {
  install -d -m 0755 "$(dirname "$STATE")"
  printf '%s\n' "$wanted" > "$STATE.tmp"
  mv -f "$STATE.tmp" "$STATE"
}

if [ ${#changed[@]} -eq 0 ] && systemctl is-active --quiet docker.service; then
  if [ "$applied" = "$wanted" ]; then
    echo "unchanged"
    exit 0
  fi
  # The files are in place, but the running daemon was not started with them (an
  # interrupted run) or nothing says it was (the first run of this version of the script).
  echo "completing an interrupted change: the files are in place, the running docker was not started with them (recorded: ${applied:-nothing})" >&2
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

# usage: docker_up UNIT...  (restarts the units, then waits for the API on the unix socket)
docker_up() {
  systemctl daemon-reload
  systemctl reset-failed "$@" >/dev/null 2>&1 || true
  systemctl restart "$@" || return 1
  local _
  for _ in $(seq 1 60); do
    if docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  return 1
}

if docker_up docker.service; then
  record_applied
  if [ ${#changed[@]} -eq 0 ]; then
    echo "completed: docker restarted with the files already in place"
  else
    echo "changed: ${changed[*]}; docker restarted"
  fi
  exit 0
fi

echo "docker did not start with the new configuration (${changed[*]}); restoring the previous one" >&2
journalctl -u docker.service --no-pager -n 20 >&2 2>/dev/null || true
# Restart=on-failure may start dockerd again meanwhile: stop it, so that no dockerd runs
# with a mix of new and previous files, or with a unit definition older than the files.
systemctl stop docker.service >/dev/null 2>&1 || true
for rel in "${changed[@]}"; do
  if [ -e "$backup/$rel" ]; then
    cp -a "$backup/$rel" "/$rel.delivery-restore"
    mv -f "/$rel.delivery-restore" "/$rel"
  else
    rm -f "/$rel"
  fi
done
# A dockerd that listened on unix:///var/run/docker.sock itself deletes that path when it
# stops, also when docker.socket had created it: restart the socket unit with the service,
# so that the path exists again when the previous configuration is the package's own
# (`dockerd -H fd://`, socket-activated, no daemon.json of ours).
units=(docker.service)
if systemctl cat docker.socket >/dev/null 2>&1; then units=(docker.socket docker.service); fi
if docker_up "${units[@]}"; then
  echo "docker runs again with the previous configuration" >&2
else
  echo "docker does not start with the previous configuration either" >&2
fi
exit 1
