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
#   until=PATH   the bundle's files are needed only until PATH exists (GitLab's initial root
#          password, until its database exists): while PATH is absent they are installed;
#          once PATH exists (even as a dangling link) they are removed instead, and never
#          installed again.
#
# Every path must be absolute, under /srv/ (or /etc/docker/certs.d/, registry CAs Docker reads per
# connection) and without '..'. Everything is checked before
# anything is written (paths, file types, empty files); a file is written to a temp file
# in its own directory and renamed into place, only when its content or mode differs.
# Prints "unchanged" or "changed: <paths>".
#
# Symbolic links are never followed. A service can create links in the folders it writes
# (Traefik's letsencrypt/, GitLab's config/): following one would write or chmod any file of
# the host. A path this step manages (a file, an ensure= file, a prune= or remove= path), or a
# folder between /srv and it, that is a symbolic link stops the step before anything is
# written (exit 2; remove the link after finding out how it got there). The writes themselves
# go through a descriptor checked to be the file meant (verify_fd), so a link swapped in after
# the checks is caught too: modes and owners are set through /proc/self/fd, never by path.
set -euo pipefail
umask 077

work=$(mktemp -d)
# shellcheck disable=SC2317  # called through the trap
cleanup() { rm -rf "$work"; if [ ${#temps[@]} -gt 0 ]; then rm -f -- "${temps[@]}"; fi; }
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

# Refuse PATH when it, or a folder between /srv and it, is a symbolic link (/srv itself is the
# administrator's to place), or when it is a file with other names.
refuse_links() {
  local path=$1 prefix=/srv part
  local -a parts
  IFS=/ read -r -a parts <<< "${path#/srv/}"
  for part in "${parts[@]}"; do
    prefix=$prefix/$part
    if [ -L "$prefix" ]; then
      echo "refusing $path: $prefix is a symbolic link (a service may have planted it); nothing was changed" >&2
      exit 2
    fi
    [ -e "$prefix" ] || return 0
  done
  if [ -f "$path" ] && [ "$(stat -c %h "$path")" != 1 ]; then
    echo "refusing $path: the file has other names (hard links); nothing was changed" >&2
    exit 2
  fi
}

# True when descriptor FD is the file PATH itself (not something a link led to), a regular file
# with one name, owned by root.
verify_fd() {
  [ "$(readlink "/proc/self/fd/$1")" = "$2" ] && [ -f "/proc/self/fd/$1" ] \
    && [ "$(stat -L -c %h:%u "/proc/self/fd/$1")" = "1:0" ]
}

# Open PATH read-only (never creating anything) and check it: sets $fd; exits 3 on a mismatch.
open_verified() {
  exec {fd}<"$1"
  if ! verify_fd "$fd" "$1"; then
    echo "refusing $1: it is not a plain file of its own (a link swapped in, or a file with other names); nothing more was changed" >&2
    exit 3
  fi
}

# A new temp file next to DEST holding SRC (empty when SRC is ""), with MODE, root:root, set
# through a verified descriptor; its path is left in $made.
new_file_beside() {
  local dest=$1 src=$2 mode=$3
  made=$(mktemp "$(dirname "$dest")/.$(basename "$dest").XXXXXX")
  temps+=("$made")
  open_verified "$made"
  if [ -n "$src" ]; then cat "$src" > "/proc/self/fd/$fd"; fi
  chown root:root "/proc/self/fd/$fd"
  chmod "$mode" "/proc/self/fd/$fd"
  exec {fd}<&-
}

ensure=()
prune=()
remove=()
temps=()
fd=
made=
until=
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
    until=?*) check_path "${arg#until=}"; until=${arg#until=} ;;
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
for path in "${files[@]/#//}" "${ensure[@]%:*}" "${prune[@]}" "${remove[@]}"; do
  refuse_links "$path"
done

changed=()
if [ -n "$until" ] && { [ -e "$until" ] || [ -L "$until" ]; }; then
  for rel in "${files[@]}"; do
    if [ -e "/$rel" ]; then
      rm -f -- "/$rel"
      changed+=("/$rel (removed: $until exists)")
    fi
  done
  files=()
fi
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
  new_file_beside "$dest" "$src" "$mode"
  mv -f -T "$made" "$dest"
  changed+=("$dest")
done

for spec in "${ensure[@]}"; do
  path=${spec%:*}
  mode=${spec##*:}
  if [ ! -e "$path" ]; then
    dir=$(dirname "$path")
    [ -d "$dir" ] || install -d -m 0700 "$dir"
    new_file_beside "$path" "" "$mode"
    mv -n -T "$made" "$path"  # never over a file the service made meanwhile
    changed+=("$path")
  else
    open_verified "$path"
    if [ "$(stat -L -c %a "/proc/self/fd/$fd")" != "${mode#0}" ]; then
      chmod "$mode" "/proc/self/fd/$fd"
      changed+=("$path")
    fi
    exec {fd}<&-
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
