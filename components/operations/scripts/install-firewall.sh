#!/usr/bin/env bash
# Install and apply the Docker API firewall (nftables table inet delivery). Idempotent.
#
# usage: base64 TAR | install-firewall.sh
#   stdin: a base64 tar (components/host/remote_script.py tar_base64) holding exactly
#          etc/delivery/firewall.nft and etc/systemd/system/delivery-firewall.service.
#
# Installs Debian's nftables when nft is missing. The rules are checked with `nft -c -f`
# before anything is written; files are written atomically, only when they changed; the
# table is (re)loaded with the unit's ExecReload (`nft -f`: one transaction), or started.
# Then, when the rules changed, the address this session's SSH client comes from (where
# Pulumi runs, which also dials the Docker API) must still be allowed: otherwise the
# previous files and rules are put back and the step fails, naming the config key.
# Prints "unchanged" or "changed: <what>".
set -euo pipefail
umask 022

RULES=etc/delivery/firewall.nft
UNIT=etc/systemd/system/delivery-firewall.service
UNIT_NAME=delivery-firewall.service
TABLE="inet delivery"

work=$(mktemp -d)
# shellcheck disable=SC2317  # called through the trap
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

mkdir "$work/new" "$work/old"
base64 -d | tar -x --no-same-owner -C "$work/new"
for rel in "$RULES" "$UNIT"; do
  [ -s "$work/new/$rel" ] || { echo "the bundle lacks /$rel" >&2; exit 2; }
done
if [ "$(cd "$work/new" && find . -type f | wc -l)" -ne 2 ]; then
  echo "the bundle holds more than $RULES and $UNIT" >&2
  exit 2
fi

if ! command -v nft >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 -qq update >&2
  apt-get -o DPkg::Lock::Timeout=300 -qq install --no-install-recommends nftables >&2
fi

if ! out=$(nft -c -f "$work/new/$RULES" 2>&1); then
  echo "the firewall rules are rejected by nft -c; nothing was changed:" >&2
  echo "$out" >&2
  exit 1
fi

changed=()
for rel in "$RULES" "$UNIT"; do
  if [ -f "/$rel" ]; then
    cp -p "/$rel" "$work/old/$(basename "$rel")"
  fi
  if [ -f "/$rel" ] && cmp -s "$work/new/$rel" "/$rel" && [ "$(stat -c %a:%u:%g "/$rel")" = "644:0:0" ]; then
    continue
  fi
  install -d -m 0755 "$(dirname "/$rel")"
  tmp=$(mktemp "$(dirname "/$rel")/.$(basename "$rel").XXXXXX")
  install -m 0644 -o root -g root "$work/new/$rel" "$tmp"
  mv -f "$tmp" "/$rel"
  changed+=("/$rel")
done

unit_changed=
for c in "${changed[@]}"; do [ "$c" != "/$UNIT" ] || unit_changed=1; done
[ -z "$unit_changed" ] || systemctl daemon-reload
if ! systemctl is-enabled --quiet "$UNIT_NAME" 2>/dev/null; then
  systemctl enable --quiet "$UNIT_NAME"
  changed+=("enabled")
fi

apply() {
  if systemctl is-active --quiet "$UNIT_NAME"; then
    systemctl reload "$UNIT_NAME"
  else
    systemctl start "$UNIT_NAME"
  fi
}

if [ ${#changed[@]} -eq 0 ] && systemctl is-active --quiet "$UNIT_NAME" && nft list table "$TABLE" >/dev/null 2>&1; then
  echo "unchanged"
  exit 0
fi
apply

# The SSH client's address (`SSH_CLIENT` = "ADDR PORT PORT"; absent under sudo's env_reset).
client=${SSH_CLIENT%% *}
client=${client#::ffff:}
if [ -n "$client" ]; then
  case $client in *:*) set=docker_api_v6 ;; *) set=docker_api_v4 ;; esac
  route=$(ip -o route get "$client" 2>/dev/null || true)
  if [[ $route == local* ]] || [[ $route =~ \ dev\ (docker0|br-[^ ]*)\  ]]; then
    :
  elif ! nft get element "$TABLE" "$set" "{ $client }" >/dev/null 2>&1; then
    for rel in "$RULES" "$UNIT"; do
      if [ -f "$work/old/$(basename "$rel")" ]; then
        cp -p "$work/old/$(basename "$rel")" "/$rel"
      else
        rm -f "/$rel"
      fi
    done
    systemctl daemon-reload
    if [ -f "/$RULES" ]; then
      apply
    else
      systemctl disable --quiet "$UNIT_NAME" 2>/dev/null || true
      nft delete table "$TABLE" 2>/dev/null || true
    fi
    echo "refusing the firewall: Pulumi runs from $client, which would lose the Docker API (TCP 2376) of this host;" \
      "add it to delivery:dockerApiAllowedSources (the previous rules are back in place)" >&2
    exit 1
  fi
fi

echo "changed: ${changed[*]:-table reloaded}; applied"
