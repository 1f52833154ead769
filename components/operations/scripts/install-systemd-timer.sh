#!/usr/bin/env bash
# Install a systemd service and the timer that starts it, and enable the timer. Idempotent.
#
# usage: base64 TAR | install-systemd-timer.sh UNIT
#   UNIT   the units' name without suffix (delivery-registry-gc): the tar on stdin
#          (components/host/remote_script.py tar_base64) holds exactly
#          etc/systemd/system/UNIT.service and etc/systemd/system/UNIT.timer.
#
# Both files are checked with `systemd-analyze verify` (and the timer's OnCalendar with
# `systemd-analyze calendar`) before anything is written; they are written atomically and only
# when they changed; systemd then reloads and the timer is restarted (a changed schedule takes
# effect at once). The service itself is never started here. Prints "unchanged" or
# "changed: <what>".
set -euo pipefail
umask 022

unit=${1:?usage: install-systemd-timer.sh UNIT}
case $unit in
  delivery-[a-z0-9-]*) ;;
  *) echo "unit name must start with delivery- and use [a-z0-9-], got '$unit'" >&2; exit 2 ;;
esac
case $unit in *[!a-z0-9-]*) echo "unit name must use [a-z0-9-], got '$unit'" >&2; exit 2 ;; esac

work=$(mktemp -d)
# shellcheck disable=SC2317  # called through the trap
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

mkdir "$work/new"
base64 -d | tar -x --no-same-owner -C "$work/new"
expected=$(printf '%s\n' "etc/systemd/system/$unit.service" "etc/systemd/system/$unit.timer")
got=$(cd "$work/new" && find . -type f -printf '%P\n' | sort)
if [ "$got" != "$expected" ]; then
  echo "expected exactly $unit.service and $unit.timer on stdin, got: $got" >&2
  exit 2
fi

# The calendar expression first: a clear message for the most likely mistake.
calendar=$(sed -n 's/^OnCalendar=\(..*\)$/\1/p' "$work/new/etc/systemd/system/$unit.timer")
if [ -z "$calendar" ] || ! out=$(systemd-analyze calendar "$calendar" 2>&1); then
  echo "systemd rejects the schedule '$calendar'; nothing was changed:" >&2
  echo "${out:-no OnCalendar= line}" >&2
  exit 1
fi
# verify needs the units side by side under their own names.
if ! out=$(cd "$work/new/etc/systemd/system" && systemd-analyze verify "./$unit.service" "./$unit.timer" 2>&1); then
  echo "systemd-analyze rejects $unit.service/.timer; nothing was changed:" >&2
  echo "$out" >&2
  exit 1
fi

changed=()
for suffix in service timer; do
  rel="etc/systemd/system/$unit.$suffix"
  if [ -f "/$rel" ] && cmp -s "$work/new/$rel" "/$rel" && [ "$(stat -c %a:%u:%g "/$rel")" = "644:0:0" ]; then
    continue
  fi
  tmp=$(mktemp "/etc/systemd/system/.$unit.$suffix.XXXXXX")
  install -m 0644 -o root -g root "$work/new/$rel" "$tmp"
  mv -f "$tmp" "/$rel"
  changed+=("/$rel")
done

if [ ${#changed[@]} -gt 0 ]; then
  systemctl daemon-reload
  if systemctl is-active --quiet "$unit.timer"; then
    systemctl restart "$unit.timer"
  fi
fi
if ! systemctl is-enabled --quiet "$unit.timer" || ! systemctl is-active --quiet "$unit.timer"; then
  systemctl enable --now --quiet "$unit.timer"
  changed+=("$unit.timer enabled")
fi

if [ ${#changed[@]} -eq 0 ]; then
  echo "unchanged"
else
  echo "changed: ${changed[*]}"
fi
