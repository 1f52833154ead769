#!/usr/bin/env bash
# Install Debian's fail2ban with the platform's jails and (re)load it when they changed.
#
# usage: base64 TAR | install-fail2ban.sh LOGPATH jail=NAME...
#   stdin: a base64 tar (components/host/remote_script.py tar_base64) of files under
#          etc/fail2ban/ (jail.d/delivery.local, filter.d/delivery-*.conf).
#   LOGPATH: Traefik's access log; created empty (0640) when missing, since fail2ban
#          refuses a jail whose log does not exist.
#   jail=NAME: the jails that must be running afterwards.
#
# The whole configuration (/etc/fail2ban with the new files) is checked with
# `fail2ban-client -t` before anything is written; files are written atomically, only when
# they changed; then fail2ban is reloaded (or started) and every jail is waited for.
# Prints "unchanged" or "changed: <paths>".
set -euo pipefail
umask 022

logpath=${1:?usage: install-fail2ban.sh LOGPATH jail=NAME...}
shift
jails=()
for arg in "$@"; do
  case $arg in
    jail=?*) jails+=("${arg#jail=}") ;;
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
    etc/fail2ban/jail.d/*.local | etc/fail2ban/filter.d/*.conf) ;;
    *) echo "refusing to write /$rel" >&2; exit 2 ;;
  esac
done

missing=()
for pkg in fail2ban nftables python3-systemd python3-pyinotify; do
  dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q ' installed$' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 -qq update >&2
  apt-get -o DPkg::Lock::Timeout=300 -qq install --no-install-recommends "${missing[@]}" >&2
fi

if [ ! -e "$logpath" ]; then
  [ -d "$(dirname "$logpath")" ] || { echo "$(dirname "$logpath") does not exist (the host's /srv layout)" >&2; exit 1; }
  install -m 0640 -o root -g root /dev/null "$logpath"
fi

# The configuration as it will be, checked as a whole.
cp -a /etc/fail2ban "$work/check"
cp -a "$work/new/etc/fail2ban/." "$work/check/"
if ! out=$(fail2ban-client -c "$work/check" -t 2>&1); then
  echo "fail2ban rejects the configuration; nothing was changed:" >&2
  echo "$out" >&2
  exit 1
fi

changed=()
for rel in "${files[@]}"; do
  if [ -f "/$rel" ] && cmp -s "$work/new/$rel" "/$rel" && [ "$(stat -c %a:%u:%g "/$rel")" = "644:0:0" ]; then
    continue
  fi
  tmp=$(mktemp "$(dirname "/$rel")/.$(basename "$rel").XXXXXX")
  install -m 0644 -o root -g root "$work/new/$rel" "$tmp"
  mv -f "$tmp" "/$rel"
  changed+=("/$rel")
done

if ! systemctl is-enabled --quiet fail2ban.service; then
  systemctl enable --quiet fail2ban.service
  changed+=("enabled")
fi
if ! systemctl is-active --quiet fail2ban.service; then
  systemctl restart fail2ban.service
  changed+=("started")
elif [ ${#changed[@]} -gt 0 ]; then
  fail2ban-client reload >/dev/null
fi

# Every jail up (the server needs a moment after a start or reload).
for _ in $(seq 1 60); do
  ok=1
  for jail in "${jails[@]}"; do
    fail2ban-client status "$jail" >/dev/null 2>&1 || { ok=; break; }
  done
  [ -z "$ok" ] || break
  sleep 0.5
done
if [ -z "$ok" ]; then
  echo "fail2ban does not run jail '$jail' after 30 s:" >&2
  systemctl status --no-pager --lines=20 fail2ban.service >&2 || true
  exit 1
fi

if [ ${#changed[@]} -eq 0 ]; then
  echo "unchanged"
else
  echo "changed: ${changed[*]}"
fi
