#!/usr/bin/env bash
# Before the GitLab container is replaced by another version: check the upgrade against the
# version the running container has, then take a backup (docs/operations.md, "GitLab upgrades").
#
# usage: echo NEW_VERSION | gitlab-pre-upgrade.sh CONTAINER STOPS [BACKUP_UNIT]
#   NEW_VERSION  (stdin) the gitlab/gitlab-ce tag about to run, <x.y.z>-ce.0: the version the
#                preview-time check passed
#   STOPS        GitLab's required upgrade stops, `major.minor` comma-separated, ascending
#                (components/operations/data/gitlab-upgrade-stops.yml)
#   BACKUP_UNIT  the backup service to run (delivery-backup-gitlab.service); without it (no
#                off-host repository configured) the backup stays on this host:
#                gitlab-backup create, and a copy of gitlab-secrets.json and gitlab.rb in
#                <data>/backups/pre-upgrade-<from>-<time>/
#
# No container yet, or the same version: prints "unchanged". A downgrade, or an upgrade that
# skips a required stop, fails naming the next allowed version, and nothing is changed.
set -euo pipefail
umask 077

if [ $# -lt 2 ] || [ $# -gt 3 ]; then echo "usage: echo NEW_VERSION | $0 CONTAINER STOPS [BACKUP_UNIT]" >&2; exit 2; fi
container=$1 stops=$2 unit=${3:-}
IFS= read -r new || true
GITLAB_DIR=/srv/services/gitlab
version_re='^([0-9]+)\.([0-9]+)\.([0-9]+)-ce\.0$'

[[ $new =~ $version_re ]] || { echo "not a gitlab-ce version: $new" >&2; exit 2; }
n_major=${BASH_REMATCH[1]} n_minor=${BASH_REMATCH[2]} n_patch=${BASH_REMATCH[3]}

image_id=$(docker inspect -f '{{.Image}}' "$container" 2>/dev/null || true)
if [ -z "$image_id" ]; then
  echo "unchanged: no GitLab container yet"
  exit 0
fi
# The container names its image by ID (pulumi-docker): the version is the image's gitlab-ce tag.
mapfile -t versions < <(docker image inspect -f '{{range .RepoTags}}{{println .}}{{end}}' "$image_id" 2>/dev/null |
  sed -n 's|^gitlab/gitlab-ce:\([0-9][0-9.]*-ce\.0\)$|\1|p' | sort -u)
if [ ${#versions[@]} -eq 1 ]; then
  current=${versions[0]}
else
  current=
fi
if [ "$current" = "$new" ]; then
  echo "unchanged: GitLab $current"
  exit 0
fi
if [ -n "$current" ]; then
  [[ $current =~ $version_re ]]
  c_major=${BASH_REMATCH[1]} c_minor=${BASH_REMATCH[2]} c_patch=${BASH_REMATCH[3]}
else
  # untagged or several tags: only the preview-time check (the stack's previous output) applies
  echo "the running GitLab's version is unknown (its image has ${#versions[@]} gitlab/gitlab-ce tags): not checked here" >&2
  c_major=$n_major c_minor=$n_minor c_patch=$n_patch
  current=unknown
fi

cur=$((c_major * 1000000 + c_minor * 1000 + c_patch))
nxt=$((n_major * 1000000 + n_minor * 1000 + n_patch))
if [ "$nxt" -lt "$cur" ]; then
  echo "refusing to downgrade GitLab from $current to $new (GitLab does not support downgrades; restore a backup instead); nothing was changed" >&2
  exit 1
fi
IFS=, read -r -a stop_list <<<"$stops"
for stop in "${stop_list[@]}"; do
  s_major=${stop%%.*} s_minor=${stop#*.}
  s=$((s_major * 1000000 + s_minor * 1000))
  # a stop strictly between the running minor and the new minor must be upgraded to first
  if [ "$s" -gt $((c_major * 1000000 + c_minor * 1000)) ] && [ "$s" -lt $((n_major * 1000000 + n_minor * 1000)) ]; then
    echo "refusing to upgrade GitLab from $current to $new: it skips the required upgrade stop $stop; upgrade to the latest $stop.x release first (delivery:gitlabVersion: $stop.<latest patch>-ce.0); nothing was changed" >&2
    exit 1
  fi
done

if [ -n "$unit" ]; then
  # a oneshot unit: `systemctl start` returns once the backup finished, non-zero if it failed
  systemctl start "$unit"
  echo "backed up (${unit}) before upgrading GitLab from $current to $new"
else
  dest=$GITLAB_DIR/data/backups/pre-upgrade-$current-$(date -u +%Y%m%dT%H%M%SZ)
  docker exec -e GITLAB_ASSUME_YES=1 "$container" gitlab-backup create STRATEGY=copy >&2
  install -d -m 0700 "$dest"
  cp -p "$GITLAB_DIR/config/gitlab-secrets.json" "$GITLAB_DIR/config/gitlab.rb" "$dest/"
  echo "backed up on this host only (no delivery:backupRepository) before upgrading GitLab from $current to $new: $dest"
fi
