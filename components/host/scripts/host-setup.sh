#!/usr/bin/env bash
# Set the time zone and create the /srv layout the host's roles need. Idempotent.
#
# usage: host-setup.sh TIMEZONE < directories
#   stdin: one "PATH MODE" pair per line; every PATH must be under /srv/.
set -euo pipefail

tz=${1:?usage: host-setup.sh TIMEZONE}
changes=()

if [ ! -e "/usr/share/zoneinfo/$tz" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 -qq update >&2
  apt-get -o DPkg::Lock::Timeout=300 -qq install tzdata >&2
fi
if [ ! -f "/usr/share/zoneinfo/$tz" ]; then
  echo "unknown time zone '$tz' (no /usr/share/zoneinfo/$tz)" >&2
  exit 1
fi
if [ "$(readlink /etc/localtime || true)" != "/usr/share/zoneinfo/$tz" ]; then
  ln -sfn "/usr/share/zoneinfo/$tz" /etc/localtime.delivery-tmp
  mv -fT /etc/localtime.delivery-tmp /etc/localtime
  changes+=("timezone")
fi
if [ "$(cat /etc/timezone 2>/dev/null || true)" != "$tz" ]; then
  printf '%s\n' "$tz" > /etc/timezone.delivery-tmp
  mv -f /etc/timezone.delivery-tmp /etc/timezone
  changes+=("/etc/timezone")
fi

while read -r dir mode; do
  [ -n "$dir" ] || continue
  case $dir in
    /srv/*) ;;
    *) echo "refusing to create '$dir': not under /srv/" >&2; exit 2 ;;
  esac
  case $dir in
    *..*) echo "refusing '$dir': contains '..'" >&2; exit 2 ;;
  esac
  if [ ! -d "$dir" ]; then
    install -d -m "$mode" "$dir"
    changes+=("$dir")
  elif [ "$(stat -c %a "$dir")" != "${mode#0}" ]; then
    chmod "$mode" "$dir"
    changes+=("$dir")
  fi
done

if [ ${#changes[@]} -eq 0 ]; then
  echo "unchanged"
else
  echo "changed: ${changes[*]}"
fi
