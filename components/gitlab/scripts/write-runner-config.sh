#!/usr/bin/env bash
# Install gitlab-runner's config.toml, which holds the runner's authentication token. Idempotent.
#
# usage: write-runner-config.sh PATH < config.toml
#   PATH:  the file to write, a .toml file under /srv/gitlab-runner/ (written 0600, root:root)
#   stdin: the complete config.toml rendered by the program (one [[runners]] entry)
#
# The file is validated, written to a temporary file in the same folder and renamed into
# place; nothing happens when it is already as wanted. Prints "unchanged" or "changed: ...";
# never prints the token.
#
# Token rotation: when GitLab gives runner tokens an expiry, gitlab-runner renews its own
# token before it expires and writes the new one (with token_obtained_at/token_expires_at)
# into this file; the old token stops working. The program only knows the token GitLab
# returned when it created the runner, so rewriting the file blindly would put back a
# revoked token. A stamp next to the file records the SHA-256 of the token the program last
# installed. While the program's token is that same one (the same runner), the token found
# in the file, and its timestamps, are kept; a different token from the program (the runner
# was replaced, e.g. by a runnerTokenRotation change) always wins.
#
# The token never appears on a command line (awk gets it through its environment). The runner
# container writes this folder, so symbolic links in it are never followed: a link in place of
# the file or its stamp stops the step.
set -euo pipefail
umask 077

dest=${1:?usage: write-runner-config.sh PATH < config.toml}
case $dest in
  /srv/gitlab-runner/*.toml) ;;
  *) echo "refusing to write '$dest': not a .toml file under /srv/gitlab-runner/" >&2; exit 2 ;;
esac
case $dest in
  *..*) echo "refusing '$dest': contains '..'" >&2; exit 2 ;;
esac

dir=$(dirname "$dest")
stamp="$dir/.$(basename "$dest").token.sha256"
install -d -m 0700 -o root -g root "$dir"
for path in "$dir" "$dest" "$stamp"; do
  if [ -L "$path" ]; then
    echo "refusing $path: it is a symbolic link (the runner container may have planted it); nothing was changed" >&2
    exit 2
  fi
done

new=$(mktemp "$dir/.config.toml.XXXXXX")
merged=$(mktemp "$dir/.config.toml.XXXXXX")
stamp_new=$(mktemp "$dir/.stamp.XXXXXX")
# shellcheck disable=SC2317  # called through the trap
cleanup() { rm -f "$new" "$merged" "$stamp_new"; }
trap cleanup EXIT
cat > "$new"

# The value of the first `token = "..."` line (one [[runners]] entry per file).
token_of() {
  sed -n -E 's/^[[:space:]]*token[[:space:]]*=[[:space:]]*"([^"]*)".*$/\1/p' "$1" | head -n 1
}
valid_token() {
  case $1 in
    ''|*[!A-Za-z0-9_.-]*) return 1 ;;
    *) return 0 ;;
  esac
}

grep -q '^\[\[runners\]\]' "$new" || { echo "config.toml on stdin has no [[runners]] entry; nothing was changed" >&2; exit 2; }
incoming=$(token_of "$new")
valid_token "$incoming" || { echo "config.toml on stdin has no valid runner token; nothing was changed" >&2; exit 2; }
incoming_sum=$(printf '%s' "$incoming" | sha256sum | cut -d' ' -f1)

kept=
if [ -f "$dest" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$incoming_sum" ]; then
  current=$(token_of "$dest")
  if [ -n "$current" ] && [ "$current" != "$incoming" ]; then
    valid_token "$current" || { echo "unexpected token format in $dest; nothing was changed" >&2; exit 1; }
    times=$(grep -E '^[[:space:]]*token_(obtained|expires)_at[[:space:]]*=[[:space:]]*[0-9TZ:.+-]+[[:space:]]*$' "$dest" | sed -E 's/^[[:space:]]+//' || true)
    # The token reaches awk through its environment, never its command line (which every user
    # of the host can read in /proc/<pid>/cmdline and ps).
    KEPT_TOKEN=$current KEPT_TIMES=$times awk '
      !done && /^[[:space:]]*token[[:space:]]*=/ {
        print "token = \"" ENVIRON["KEPT_TOKEN"] "\""
        if (ENVIRON["KEPT_TIMES"] != "") print ENVIRON["KEPT_TIMES"]
        done = 1
        next
      }
      { print }
    ' "$new" > "$merged"
    mv -f -T "$merged" "$new"
    kept=" (kept the token the runner rotated to)"
  fi
fi

if command -v python3 >/dev/null 2>&1 && python3 -c 'import tomllib' >/dev/null 2>&1; then
  if ! python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$new" >/dev/null 2>&1; then
    echo "config.toml is not valid TOML; nothing was changed" >&2
    exit 1
  fi
fi

save_stamp() {
  printf '%s\n' "$incoming_sum" > "$stamp_new"
  mv -f -T "$stamp_new" "$stamp"
}

if [ -f "$dest" ] && cmp -s "$new" "$dest" && [ "$(stat -c %a:%u:%g "$dest")" = "600:0:0" ]; then
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$incoming_sum" ]; then save_stamp; fi
  echo "unchanged"
  exit 0
fi

# mktemp made "$new" 0600 (umask 077) and root's: no chmod or chown by path.
mv -f -T "$new" "$dest"
save_stamp
echo "changed: $dest$kept"
