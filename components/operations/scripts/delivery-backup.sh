#!/usr/bin/env bash
# The platform's backup tool on a host (installed as /usr/local/lib/delivery/backup.sh by
# install-backup.sh; run by the delivery-backup-* systemd units).
#
# usage: backup.sh init              create the restic repository unless it exists (checks access)
#        backup.sh backup <set>      back up a set: `gitlab` (gitlab-backup create in the GitLab
#                                    container, then the archive, gitlab-secrets.json and gitlab.rb)
#                                    or the paths listed in /etc/delivery/backup/sets/<set>;
#                                    then restic forget --keep-last KEEP --prune of that set
#        backup.sh check             restic check
#        backup.sh notify <unit>     call the webhook (if configured): <unit> failed
#        backup.sh restic <args>...  restic with the repository's settings (restore, snapshots)
#
# Settings (written by install-backup.sh, root only): /etc/delivery/backup/{repository,
# password} (restic's RESTIC_REPOSITORY_FILE and RESTIC_PASSWORD_FILE: never on a command
# line), credentials.env (S3 keys), ssh_config/ssh_key/known_hosts (SFTP), webhook.curl,
# backup.conf (HOST, KEEP, GITLAB_SKIP, GITLAB_CONTAINER, GITLAB_DIR).
set -euo pipefail
umask 077

ETC=/etc/delivery/backup
export RESTIC_REPOSITORY_FILE=$ETC/repository
export RESTIC_PASSWORD_FILE=$ETC/password
export RESTIC_CACHE_DIR=/var/cache/delivery-backup/restic
LOCK_RETRIES=${DELIVERY_BACKUP_LOCK_RETRIES:-20}
LOCK_WAIT=${DELIVERY_BACKUP_LOCK_WAIT:-30}

HOST=$(hostname)
KEEP=14
GITLAB_SKIP=
GITLAB_CONTAINER=gitlab
GITLAB_DIR=/srv/services/gitlab
if [ -f "$ETC/backup.conf" ]; then
  while IFS='=' read -r name value; do
    case $name in
      HOST | KEEP | GITLAB_SKIP | GITLAB_CONTAINER | GITLAB_DIR) printf -v "$name" '%s' "$value" ;;
      '' | '#'*) ;;
      *) echo "backup.conf: unknown setting '$name'" >&2; exit 2 ;;
    esac
  done <"$ETC/backup.conf"
fi
if [ -f "$ETC/credentials.env" ]; then
  while IFS= read -r line; do
    case $line in
      AWS_ACCESS_KEY_ID=* | AWS_SECRET_ACCESS_KEY=* | AWS_DEFAULT_REGION=* | AWS_SESSION_TOKEN=*) export "${line?}" ;;
      '') ;;
      *) echo "credentials.env: unknown variable" >&2; exit 2 ;;
    esac
  done <"$ETC/credentials.env"
fi
restic_opts=()
if [ -f "$ETC/ssh_config" ]; then
  # The host, user and port come from ssh_config (Host delivery-backup-repository), the path
  # from the repository URL: nothing of the URL appears on a command line.
  restic_opts+=(-o "sftp.command=ssh -F $ETC/ssh_config delivery-backup-repository -s sftp")
fi

# restic, retried while another host holds the repository's lock (forget --prune, check).
run_restic() {
  local attempt err
  err=$(mktemp)
  for ((attempt = 1; attempt <= LOCK_RETRIES; attempt++)); do
    if restic "${restic_opts[@]}" "$@" 2>"$err"; then
      cat "$err" >&2
      rm -f "$err"
      return 0
    fi
    cat "$err" >&2
    if ! grep -q "already locked" "$err"; then
      rm -f "$err"
      return 1
    fi
    echo "repository locked by another host; retrying in ${LOCK_WAIT}s ($attempt/$LOCK_RETRIES)" >&2
    sleep "$LOCK_WAIT"
  done
  rm -f "$err"
  return 1
}

init_repository() {
  install -d -m 0700 "$RESTIC_CACHE_DIR"
  if restic "${restic_opts[@]}" cat config >/dev/null 2>&1; then
    return 0
  fi
  run_restic init >&2
  echo "repository initialised"
}

forget() {
  run_restic forget --tag "$1" --host "$HOST" --group-by host,tags --keep-last "$KEEP" --prune >&2
}

backup_gitlab() {
  local dir=$GITLAB_DIR/data/backups start archive skip=() f
  for f in "$GITLAB_DIR/config/gitlab-secrets.json" "$GITLAB_DIR/config/gitlab.rb"; do
    [ -f "$f" ] || { echo "$f is missing: a GitLab backup is useless without it" >&2; exit 1; }
  done
  [ -z "$GITLAB_SKIP" ] || skip=("SKIP=$GITLAB_SKIP")
  start=$(date +%s)
  docker exec -e GITLAB_ASSUME_YES=1 "$GITLAB_CONTAINER" gitlab-backup create STRATEGY=copy "${skip[@]}" >&2
  archive=$(find "$dir" -maxdepth 1 -type f -name '*_gitlab_backup.tar' -newermt "@$((start - 1))" -printf '%T@ %p\n' |
    sort -n | tail -n 1 | cut -d' ' -f2-)
  [ -n "$archive" ] || { echo "gitlab-backup create wrote no new archive in $dir" >&2; exit 1; }
  run_restic backup --tag gitlab --host "$HOST" "$archive" \
    "$GITLAB_DIR/config/gitlab-secrets.json" "$GITLAB_DIR/config/gitlab.rb" >&2
  forget gitlab
  # GitLab's archives are off-host now: keep the newest one here, for a quick local restore.
  find "$dir" -maxdepth 1 -type f -name '*_gitlab_backup.tar' ! -path "$archive" -delete
  echo "backed up $(basename "$archive")"
}

backup_paths() {
  local set=$1 paths=() p
  [ -f "$ETC/sets/$set" ] || { echo "unknown backup set '$set'" >&2; exit 2; }
  while IFS= read -r p; do
    [ -n "$p" ] && [ -e "$p" ] && paths+=("$p")
  done <"$ETC/sets/$set"
  if [ ${#paths[@]} -eq 0 ]; then
    echo "nothing to back up in set '$set' (none of its paths exists yet)"
    return 0
  fi
  run_restic backup --tag "$set" --host "$HOST" "${paths[@]}" >&2
  forget "$set"
  echo "backed up ${paths[*]}"
}

notify() {
  local unit=$1
  [ -f "$ETC/webhook.curl" ] || { echo "no webhook configured"; return 0; }
  printf '{"host":"%s","unit":"%s","result":"failed"}\n' "$HOST" "$unit" |
    curl -fsS --max-time 30 --retry 2 -K "$ETC/webhook.curl" -H 'Content-Type: application/json' --data-binary @- >/dev/null
  echo "webhook called for $unit"
}

case ${1:-} in
  init) init_repository ;;
  backup)
    [ $# -eq 2 ] || { echo "usage: $0 backup <set>" >&2; exit 2; }
    init_repository
    if [ "$2" = gitlab ]; then backup_gitlab; else backup_paths "$2"; fi
    ;;
  check) run_restic check >&2; echo "repository checked" ;;
  notify) [ $# -eq 2 ] || { echo "usage: $0 notify <unit>" >&2; exit 2; }; notify "$2" ;;
  restic) shift; run_restic "$@" ;;
  *) echo "usage: $0 init | backup <set> | check | notify <unit> | restic <args>..." >&2; exit 2 ;;
esac
