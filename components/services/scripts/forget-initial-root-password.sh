#!/usr/bin/env bash
# Delete GitLab's initial root password file once GitLab has used it. Idempotent.
#
# usage: forget-initial-root-password.sh CONTAINER FILE TIMEOUT_SECONDS [POLL_SECONDS]
#   CONTAINER  the GitLab container; its health check passes once the first `gitlab-ctl
#              reconfigure` has finished, and that reconfigure is what seeds the database with
#              the initial root password (GitLab reads initial_root_password only then)
#   FILE       the password file, /srv/services/gitlab/config/*.rb (gitlab.rb loads it only
#              while it exists)
#   TIMEOUT_SECONDS  how long to wait for CONTAINER to be healthy (GitLab's first start takes
#              minutes); POLL_SECONDS between two looks (default 10)
#
# Prints "removed FILE" or "absent". When CONTAINER is not healthy in time the file stays and
# the step fails, so that the next `pulumi up` runs it again.
set -euo pipefail

usage="usage: forget-initial-root-password.sh CONTAINER FILE TIMEOUT_SECONDS [POLL_SECONDS]"
container=${1:?$usage}
file=${2:?$usage}
timeout=${3:?$usage}
poll=${4:-10}
case $container in
  '' | *[!A-Za-z0-9_.-]*) echo "refusing container name '$container'" >&2; exit 2 ;;
esac
case $file in
  /srv/services/gitlab/config/*.rb) ;;
  *) echo "refusing '$file': not a .rb file in /srv/services/gitlab/config/" >&2; exit 2 ;;
esac
case $file in
  *..* | *//*) echo "refusing '$file': not a plain path" >&2; exit 2 ;;
esac
for n in "$timeout" "$poll"; do
  case $n in
    '' | *[!0-9]*) echo "refusing '$n': expected a number of seconds" >&2; exit 2 ;;
  esac
done

if [ ! -e "$file" ] && [ ! -L "$file" ]; then
  echo "absent"
  exit 0
fi

deadline=$((SECONDS + timeout))
status=
until [ "$status" = healthy ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "GitLab ($container) is not healthy after ${timeout}s (health: ${status:-unknown}); $file is still there: run \`pulumi up\` again once GitLab runs" >&2
    exit 1
  fi
  status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$container" 2>/dev/null || true)
  [ "$status" = healthy ] || sleep "$poll"
done

rm -f -- "$file"  # the link itself, if a link is there: rm never follows it
echo "removed $file"
