#!/usr/bin/env bash
# Install the edge's log rotation: a logrotate config, an hourly logrotate.timer, and the
# diversion of a package's own rotation of the same log. Idempotent.
#
# usage: base64 TAR | install-logrotate.sh [divert=PATH:DIVERTED]...
#   stdin: a base64 tar (components/host/remote_script.py tar_base64) of
#          etc/logrotate.d/<name> and etc/systemd/system/logrotate.timer.d/<name>.conf.
#   divert=PATH:DIVERTED  `dpkg-divert --local --rename` PATH to DIVERTED (an extension
#          logrotate skips), so that a log is not named by two configs.
#
# Installs Debian's logrotate when missing. The new logrotate config is checked with
# `logrotate --debug` (nothing rotates) before anything is written; files are written
# atomically, only when they changed; the timer is restarted when its drop-in changed.
# Prints "unchanged" or "changed: <what>".
set -euo pipefail
umask 022

diverts=()
for arg in "$@"; do
  case $arg in
    divert=/etc/logrotate.d/?*:/etc/logrotate.d/?*.disabled) diverts+=("${arg#divert=}") ;;
    *) echo "unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d)
# shellcheck disable=SC2317  # called through the trap
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

mkdir "$work/new"
base64 -d | tar -x --no-same-owner -C "$work/new"
mapfile -t files < <(cd "$work/new" && find . -type f -printf '%P\n' | sort)
[ ${#files[@]} -gt 0 ] || { echo "no files on stdin" >&2; exit 2; }
for rel in "${files[@]}"; do
  case $rel in
    etc/logrotate.d/* | etc/systemd/system/logrotate.timer.d/*.conf) ;;
    *) echo "refusing to write /$rel" >&2; exit 2 ;;
  esac
done

if ! dpkg-query -W -f='${Status}\n' logrotate 2>/dev/null | grep -q ' installed$'; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 -qq update >&2
  apt-get -o DPkg::Lock::Timeout=300 -qq install --no-install-recommends logrotate >&2
fi

changed=()
for spec in "${diverts[@]}"; do
  path=${spec%%:*}
  to=${spec#*:}
  if [ "$(dpkg-divert --truename "$path")" != "$to" ]; then
    dpkg-divert --quiet --local --rename --divert "$to" --add "$path"
    changed+=("$path diverted")
  fi
done

for rel in "${files[@]}"; do
  case $rel in
    etc/logrotate.d/*)
      # --debug parses the config and shows what it would do; errors exit non-zero.
      if ! out=$(logrotate --debug --state "$work/state" "$work/new/$rel" 2>&1); then
        echo "logrotate rejects /$rel; nothing was changed:" >&2
        echo "$out" >&2
        exit 1
      fi
      ;;
  esac
done

timer_changed=
for rel in "${files[@]}"; do
  if [ -f "/$rel" ] && cmp -s "$work/new/$rel" "/$rel" && [ "$(stat -c %a:%u:%g "/$rel")" = "644:0:0" ]; then
    continue
  fi
  install -d -m 0755 "$(dirname "/$rel")"
  tmp=$(mktemp "$(dirname "/$rel")/.$(basename "$rel").XXXXXX")
  install -m 0644 -o root -g root "$work/new/$rel" "$tmp"
  mv -f "$tmp" "/$rel"
  changed+=("/$rel")
  case $rel in etc/systemd/*) timer_changed=1 ;; esac
done

if [ -n "$timer_changed" ]; then
  systemctl daemon-reload
  systemctl restart logrotate.timer
fi
if ! systemctl is-enabled --quiet logrotate.timer; then
  systemctl enable --now --quiet logrotate.timer
  changed+=("logrotate.timer enabled")
fi

if [ ${#changed[@]} -eq 0 ]; then
  echo "unchanged"
else
  echo "changed: ${changed[*]}"
fi
