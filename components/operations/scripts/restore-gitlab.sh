#!/usr/bin/env bash
# Restore GitLab from the off-host repository onto this Services host (docs/operations.md,
# "Restore"). Installed as /usr/local/lib/delivery/restore-gitlab.sh by install-backup.sh.
#
# usage: restore-gitlab.sh [SNAPSHOT]     SNAPSHOT: a restic snapshot ID of the `gitlab` set;
#                                         default: the newest one, of any host
#
# Needs: the backup settings (pulumi up with backupRepository set) and the GitLab container
# running (pulumi up). Steps:
#   1. restic restore of the snapshot into a temporary folder;
#   2. the GitLab archive into <GITLAB_DIR>/data/backups, gitlab-secrets.json and gitlab.rb
#      into <GITLAB_DIR>/config (atomically, with their owner and mode);
#   3. in the container: gitlab-ctl reconfigure (the restored secrets), gitlab-ctl stop puma
#      and sidekiq, gitlab-backup restore BACKUP=<id> force=yes, gitlab-ctl reconfigure,
#      gitlab-ctl restart, gitlab-rake gitlab:check SANITIZE=true.
# A re-run for the backup already restored here prints "unchanged" and changes nothing
# (/var/lib/delivery/restore/restored holds its ID).
set -euo pipefail
umask 077

BACKUP=/usr/local/lib/delivery/backup.sh
CONF=/etc/delivery/backup/backup.conf
MARKER=/var/lib/delivery/restore/restored
snapshot=${1:-latest}
case $snapshot in latest | [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]*) ;; *)
  echo "usage: $0 [SNAPSHOT-ID]" >&2; exit 2 ;;
esac
[ -x "$BACKUP" ] || { echo "$BACKUP is missing: run pulumi up with delivery:backupRepository set first" >&2; exit 1; }

GITLAB_CONTAINER=gitlab
GITLAB_DIR=/srv/services/gitlab
if [ -f "$CONF" ]; then
  GITLAB_CONTAINER=$(sed -n 's/^GITLAB_CONTAINER=//p' "$CONF" | tail -n 1)
  GITLAB_DIR=$(sed -n 's/^GITLAB_DIR=//p' "$CONF" | tail -n 1)
fi

work=$(mktemp -d /var/tmp/delivery-restore.XXXXXX)
# shellcheck disable=SC2317  # called through the trap
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# The newest snapshot of the set, whichever host took it (a fresh host has another name).
"$BACKUP" restic restore "$snapshot" --tag gitlab --target "$work" >&2
archive=$(find "$work$GITLAB_DIR/data/backups" -maxdepth 1 -type f -name '*_gitlab_backup.tar' 2>/dev/null | sort | tail -n 1)
[ -n "$archive" ] || { echo "snapshot $snapshot holds no GitLab archive" >&2; exit 1; }
id=$(basename "$archive" _gitlab_backup.tar)
for f in gitlab-secrets.json gitlab.rb; do
  [ -f "$work$GITLAB_DIR/config/$f" ] || { echo "snapshot $snapshot holds no $f" >&2; exit 1; }
done

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$id" ]; then
  echo "unchanged: GitLab backup $id is restored here already"
  exit 0
fi
if [ "$(docker inspect -f '{{.State.Running}}' "$GITLAB_CONTAINER" 2>/dev/null)" != true ]; then
  echo "the GitLab container '$GITLAB_CONTAINER' is not running: run pulumi up for this host first" >&2
  exit 1
fi

# Put a restored file in place atomically, with the owner and mode restic restored.
place() {
  local from=$1 to=$2 tmp
  install -d -m 0755 "$(dirname "$to")"
  tmp=$(mktemp "$(dirname "$to")/.$(basename "$to").XXXXXX")
  cp -p -- "$from" "$tmp"
  mv -f -- "$tmp" "$to"
}
place "$work$GITLAB_DIR/config/gitlab-secrets.json" "$GITLAB_DIR/config/gitlab-secrets.json"
place "$work$GITLAB_DIR/config/gitlab.rb" "$GITLAB_DIR/config/gitlab.rb"
place "$archive" "$GITLAB_DIR/data/backups/$(basename "$archive")"

in_gitlab() { docker exec -e GITLAB_ASSUME_YES=1 "$GITLAB_CONTAINER" "$@" >&2; }
in_gitlab gitlab-ctl reconfigure
in_gitlab gitlab-ctl stop puma
in_gitlab gitlab-ctl stop sidekiq
in_gitlab gitlab-backup restore "BACKUP=$id" force=yes
in_gitlab gitlab-ctl reconfigure
in_gitlab gitlab-ctl restart
in_gitlab gitlab-rake gitlab:check SANITIZE=true

install -d -m 0700 "$(dirname "$MARKER")"
printf '%s\n' "$id" >"$MARKER.tmp"
mv -f "$MARKER.tmp" "$MARKER"
echo "restored GitLab backup $id (snapshot $snapshot)"
