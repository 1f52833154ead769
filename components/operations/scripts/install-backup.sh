#!/usr/bin/env bash
# Install the platform's backups on a host: restic (Debian's package), the backup tool, its
# settings and systemd units. Idempotent.
#
# usage: base64 TAR | install-backup.sh
#   stdin: a base64 tar (components/host/remote_script.py tar_base64) of
#     usr/local/lib/delivery/*.sh, etc/delivery/backup/** and
#     etc/systemd/system/delivery-backup*.{service,timer}.
#
# The timers' OnCalendar expressions are checked with `systemd-analyze calendar` before
# anything is written. Files are written atomically and only when they changed; files of an
# earlier install that are no longer in the tar are removed (their timers stopped first).
# Timers in the tar are enabled and started. Then the repository is initialised unless it
# exists (which checks that this host can reach it with the password). Prints "unchanged" or
# "changed: <what>".
set -euo pipefail
umask 022

MANIFEST=/etc/delivery/backup/.manifest
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
    usr/local/lib/delivery/*.sh | etc/delivery/backup/* | etc/systemd/system/delivery-backup*.service | etc/systemd/system/delivery-backup*.timer) ;;
    *) echo "refusing to write /$rel" >&2; exit 2 ;;
  esac
done

missing=()
for pkg in restic openssh-client curl; do
  dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q ' installed$' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 -qq update >&2
  apt-get -o DPkg::Lock::Timeout=300 -qq install --no-install-recommends "${missing[@]}" >&2
fi

for rel in "${files[@]}"; do
  case $rel in
    *.timer)
      while IFS= read -r spec; do
        if ! out=$(systemd-analyze calendar "$spec" 2>&1); then
          echo "/$rel: OnCalendar '$spec' is not a valid calendar expression; nothing was changed:" >&2
          echo "$out" >&2
          exit 1
        fi
      done < <(sed -n 's/^OnCalendar=\(..*\)$/\1/p' "$work/new/$rel")
      ;;
  esac
done

mode_of() {
  case $1 in
    usr/local/lib/delivery/*) echo 755 ;;
    etc/delivery/backup/known_hosts | etc/delivery/backup/ssh_config | etc/delivery/backup/backup.conf | etc/delivery/backup/sets/*) echo 644 ;;
    etc/delivery/backup/*) echo 600 ;;
    *) echo 644 ;;
  esac
}

changed=()
units_changed=
install -d -m 0700 /etc/delivery/backup
for rel in "${files[@]}"; do
  mode=$(mode_of "$rel")
  if [ -f "/$rel" ] && cmp -s "$work/new/$rel" "/$rel" && [ "$(stat -c %a:%u:%g "/$rel")" = "$mode:0:0" ]; then
    continue
  fi
  install -d -m 0755 "$(dirname "/$rel")"
  tmp=$(mktemp "$(dirname "/$rel")/.$(basename "$rel").XXXXXX")
  install -m "$mode" -o root -g root "$work/new/$rel" "$tmp"
  mv -f "$tmp" "/$rel"
  changed+=("/$rel")
  case $rel in etc/systemd/*) units_changed=1 ;; esac
done

# What an earlier install wrote and this one does not: stop its timers, remove the files.
if [ -f "$MANIFEST" ]; then
  while IFS= read -r rel; do
    [ -n "$rel" ] || continue
    if ! printf '%s\n' "${files[@]}" | grep -qxF -- "$rel"; then
      case $rel in *.timer) systemctl disable --now --quiet "$(basename "$rel")" 2>/dev/null || true ;; esac
      rm -f -- "/$rel"
      changed+=("/$rel removed")
      case $rel in etc/systemd/*) units_changed=1 ;; esac
    fi
  done <"$MANIFEST"
fi
printf '%s\n' "${files[@]}" >"$work/manifest"
if ! cmp -s "$work/manifest" "$MANIFEST" 2>/dev/null; then
  install -m 0600 "$work/manifest" "$MANIFEST"
fi

if [ -n "$units_changed" ]; then
  systemctl daemon-reload
fi
for rel in "${files[@]}"; do
  case $rel in
    etc/systemd/system/*.timer)
      timer=$(basename "$rel")
      if [ -n "$units_changed" ] && systemctl is-active --quiet "$timer"; then
        systemctl restart "$timer"
      fi
      if ! systemctl is-enabled --quiet "$timer" || ! systemctl is-active --quiet "$timer"; then
        systemctl enable --now --quiet "$timer"
        changed+=("$timer enabled")
      fi
      ;;
  esac
done

out=$(/usr/local/lib/delivery/backup.sh init)
[ -z "$out" ] || changed+=("$out")

if [ ${#changed[@]} -eq 0 ]; then
  echo "unchanged"
else
  echo "changed: ${changed[*]}"
fi
