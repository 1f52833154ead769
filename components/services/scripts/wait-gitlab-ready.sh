#!/usr/bin/env bash
# Wait until GitLab answers its readiness probe: the gate every GitLab API resource waits for.
#
# usage: wait-gitlab-ready.sh CONTAINER TIMEOUT_SECONDS
#   Asks GET /-/readiness inside the container (GitLab answers it to 127.0.0.0/8 only, its
#   default monitoring whitelist) every 5 s until it answers 200, for at most TIMEOUT_SECONDS.
#   Prints "ready: CONTAINER" (stable, so a converged run records the same output); exits 1,
#   with the last answer, when GitLab is not ready in time.
set -euo pipefail

container=${1:?usage: wait-gitlab-ready.sh CONTAINER TIMEOUT_SECONDS}
timeout=${2:?usage: wait-gitlab-ready.sh CONTAINER TIMEOUT_SECONDS}
case $timeout in
  '' | *[!0-9]*) echo "TIMEOUT_SECONDS must be a number of seconds, got '$timeout'" >&2; exit 2 ;;
esac

# omnibus ships its own curl; any other image is asked with the curl on its PATH.
# shellcheck disable=SC2016  # expanded by the container's sh, not here
probe='c=/opt/gitlab/embedded/bin/curl; [ -x "$c" ] || c=curl; exec "$c" --silent --show-error --fail --max-time 10 http://127.0.0.1/-/readiness'
deadline=$((SECONDS + timeout))
last="no answer yet"
while :; do
  if out=$(docker exec "$container" sh -c "$probe" 2>&1); then
    echo "ready: $container"
    exit 0
  fi
  last=${out:-no answer}
  if (( SECONDS + 5 > deadline )); then
    break
  fi
  sleep 5
done
echo "GitLab in '$container' is not ready after ${timeout}s (/-/readiness: ${last:0:300}); nothing that needs its API was changed" >&2
exit 1
