#!/usr/bin/env bash
# Install a bundle of service files under /srv. Idempotent and atomic.
#
# usage: base64 TAR | install-files.sh [ensure=PATH:MODE]... [prune=DIR]... [remove=PATH]...
#   stdin: a base64-encoded tar of files relative to / (components/host/remote_script.py,
#          tar_base64), each with the mode it must have; every file is owned by root:root
#          on the host. Empty stdin is fine when only ensure/prune/remove are asked for.
#   ensure=PATH:MODE  create PATH empty with MODE when it is missing, else only set its
#          mode: its content belongs to a service (Traefik's acme.json, a reload stamp)
#          and is never touched.
#   prune=DIR    delete the regular files directly in DIR that the bundle does not hold and
#          no ensure= names: files of a setting that was switched off.
#   remove=PATH  delete PATH when it exists.
#
# Every path must be absolute, under /srv/ (or /etc/docker/certs.d/, registry CAs Docker reads per
# connection) and without '..'. Everything is checked before
# anything is written (paths, file types, empty files); a file is written to a temp file
# in its own directory and renamed into place, only when its content or mode differs.
# Prints "unchanged" or "changed: <paths>".
set -euo pipefail
umask 077

work=$(mktemp -d)
# shellcheck disable=SC2317  # called through the trap
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

check_path() {
  case $1 in
    /srv/?* | /etc/docker/certs.d/?*) ;;
    *) echo "refusing '$1': not under /srv/ or /etc/docker/certs.d/" >&2; exit 2 ;;
  esac
  case $1 in
    *..* | *//* | *[[:space:]]*) echo "refusing '$1': not a plain absolute path" >&2; exit 2 ;;
  esac
}

ensure=()
prune=()
remove=()
for arg in "$@"; do
  case $arg in
    ensure=?*:*)
      spec=${arg#ensure=}
      mode=${spec##*:}
      case $mode in
        [0-7][0-7][0-7] | [0-7][0-7][0-7][0-7]) ;;
        *) echo "bad mode in '$arg'" >&2; exit 2 ;;
      esac
      check_path "${spec%:*}"
      ensure+=("$spec")
      ;;
    prune=?*) check_path "${arg#prune=}"; prune+=("${arg#prune=}") ;;
    remove=?*) check_path "${arg#remove=}"; remove+=("${arg#remove=}") ;;
    *) echo "unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

mkdir "$work/root"
cat > "$work/bundle.b64"
if [ -s "$work/bundle.b64" ]; then
  base64 -d "$work/bundle.b64" | tar -x --no-same-owner -C "$work/root"
fi
if [ -n "$(find "$work/root" -mindepth 1 ! -type f ! -type d -print -quit)" ]; then
  echo "refusing the bundle: it holds something that is not a regular file" >&2
  exit 2
fi
mapfile -t files < <(cd "$work/root" && find . -type f -printf '%P\n' | sort)
declare -A keep=()
for rel in "${files[@]}"; do
  check_path "/$rel"
  if [ ! -s "$work/root/$rel" ]; then
    echo "refusing /$rel: empty file" >&2
    exit 2
  fi
  keep["/$rel"]=1
done
for spec in "${ensure[@]}"; do
  keep["${spec%:*}"]=1
done

changed=()
for rel in "${files[@]}"; do
  src=$work/root/$rel
  dest=/$rel
  mode=$(stat -c %a "$src")
  if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$src" "$dest" \
    && [ "$(stat -c %a:%u:%g "$dest")" = "$mode:0:0" ]; then
    continue
  fi
  dir=$(dirname "$dest")
  [ -d "$dir" ] || install -d -m 0700 "$dir"
  tmp=$(mktemp "$dir/.$(basename "$dest").XXXXXX")
  install -m "$mode" -o root -g root "$src" "$tmp"
  mv -f "$tmp" "$dest"
  changed+=("$dest")
done

for spec in "${ensure[@]}"; do
  path=${spec%:*}
  mode=${spec##*:}
  if [ ! -e "$path" ]; then
    dir=$(dirname "$path")
    [ -d "$dir" ] || install -d -m 0700 "$dir"
    install -m "$mode" -o root -g root /dev/null "$path"
    changed+=("$path")
  elif [ "$(stat -c %a "$path")" != "${mode#0}" ]; then
    chmod "$mode" "$path"
    changed+=("$path")
  fi
done

for dir in "${prune[@]}"; do
  [ -d "$dir" ] || continue
  while IFS= read -r -d '' path; do
    if [ -z "${keep[$path]+x}" ]; then
      rm -f -- "$path"
      changed+=("$path (removed)")
    fi
  done < <(find "$dir" -mindepth 1 -maxdepth 1 -type f -print0)
done

for path in "${remove[@]}"; do
  if [ -e "$path" ] || [ -L "$path" ]; then
    rm -f -- "$path"
    changed+=("$path (removed)")
  fi
done

if [ ${#changed[@]} -eq 0 ]; then
  echo "unchanged"
else
  echo "changed: ${changed[*]}"
fi
