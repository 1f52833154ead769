#!/usr/bin/env bash
# Make a running container apply files it reads only at start (or on a command), in place:
# no new container, the same ID, its published ports kept. Idempotent.
#
# usage: apply-on-change.sh STAMP CONTAINER ACTION < "CONTAINER_ID FINGERPRINT"
#   STAMP:        an absolute path: the file that records what the container last applied
#   CONTAINER:    the container's name
#   ACTION:       restart      `docker restart` (Traefik: static config, ACME e-mail, DNS credentials)
#                 reconfigure  `docker exec CONTAINER gitlab-ctl reconfigure` (GitLab: gitlab.rb)
#   stdin:        one line: the ID Pulumi has for the container (a new ID is a new container)
#                 and the SHA-256 of what it must apply (of secrets too: never the values)
#
# The stamp holds "<container ID> <fingerprint>":
#   * the same container, the same fingerprint: nothing to do ("unchanged");
#   * another container (created since, from the files already in place): it read them when it
#     started, so the fingerprint is only recorded ("recorded: ...");
#   * the same container, another fingerprint: ACTION, then the fingerprint is recorded
#     ("restarted: ..." / "reconfigured: ..."). A failed ACTION records nothing: the next run
#     tries again.
set -euo pipefail
umask 077

usage="usage: apply-on-change.sh STAMP CONTAINER restart|reconfigure < 'CONTAINER_ID FINGERPRINT'"
stamp=${1:?$usage}
container=${2:?$usage}
action=${3:?$usage}
case $stamp in
  /*) ;;
  *) echo "refusing stamp '$stamp': not an absolute path" >&2; exit 2 ;;
esac
case $stamp in
  *..*) echo "refusing stamp '$stamp': contains '..'" >&2; exit 2 ;;
esac
case $action in
  restart | reconfigure) ;;
  *) echo "unknown ACTION '$action' ($usage)" >&2; exit 2 ;;
esac
container_id='' fingerprint=''
read -r container_id fingerprint || true
case $container_id in
  '' | *[!0-9a-f]*) echo "stdin must start with the container's ID (hex)" >&2; exit 2 ;;
esac
case $fingerprint in
  '' | *[!0-9a-f]*) echo "stdin must end with a hex SHA-256 fingerprint" >&2; exit 2 ;;
esac
if [ -L "$stamp" ]; then
  echo "refusing $stamp: it is a symbolic link; nothing was changed" >&2
  exit 2
fi

running_id=$(docker inspect -f '{{.Id}}' "$container" 2>/dev/null || true)
if [ "$running_id" != "$container_id" ]; then
  echo "container '$container' is ${running_id:-absent}, not $container_id; nothing was changed" >&2
  exit 1
fi

record() {
  local tmp
  install -d -m 0755 "$(dirname "$stamp")"
  tmp=$(mktemp "$(dirname "$stamp")/.apply.XXXXXX")
  printf '%s %s\n' "$container_id" "$fingerprint" > "$tmp"
  mv -f -T "$tmp" "$stamp"
}

previous_id='' previous=''
if [ -f "$stamp" ]; then
  read -r previous_id previous < "$stamp" || true
fi
if [ "$previous_id" = "$container_id" ] && [ "$previous" = "$fingerprint" ]; then
  echo "unchanged"
  exit 0
fi
if [ "$previous_id" != "$container_id" ]; then
  record
  echo "recorded: $container (a new container read the files when it started)"
  exit 0
fi

case $action in
  restart)
    docker restart --time 30 "$container" >/dev/null
    # Bounded: the container must be running again (restart=always brings it back otherwise).
    for _ in $(seq 1 60); do
      [ "$(docker inspect -f '{{.State.Running}}' "$container")" = "true" ] && break
      sleep 1
    done
    if [ "$(docker inspect -f '{{.State.Running}}' "$container")" != "true" ]; then
      echo "'$container' is not running 60 s after its restart" >&2
      exit 1
    fi
    record
    echo "restarted: $container"
    ;;
  reconfigure)
    if ! out=$(docker exec "$container" gitlab-ctl reconfigure 2>&1); then
      echo "gitlab-ctl reconfigure failed in '$container'; the change is not applied:" >&2
      printf '%s\n' "$out" | tail -n 40 >&2
      exit 1
    fi
    record
    echo "reconfigured: $container"
    ;;
esac
