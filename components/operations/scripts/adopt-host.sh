#!/usr/bin/env bash
# Take over a host that was set up by hand with the procedure this program replaces
# (docs/adopt.md). Runs before configure-docker.sh, which then restarts Docker once.
#
# usage: adopt-host.sh MODE ROLES GITLAB_IMAGE JOB_WAIT_SECONDS WILDCARD_DOMAIN
#   MODE              check (read-only: list what is found and what `up` will do) or apply
#   ROLES             the host's roles, comma-separated (gitlab,traefik,production-runner,...)
#   GITLAB_IMAGE      the image the program runs GitLab with (gitlab/gitlab-ce:<version>), or -
#   JOB_WAIT_SECONDS  how long to wait for running CI jobs before a hand-made runner is replaced
#   WILDCARD_DOMAIN   dev.<domain>: letsencrypt-dns is retired once a certificate for
#                     *.WILDCARD_DOMAIN is in Traefik's ACME store or certs/wildcard
#   stdin: the gitlab.rb the program will install (for the printed differences), may be empty
#
# What is hand-made: a container named gitlab, traefik or gitlab-runner without the labels
# the program puts on its own (see hand_made); a docker.service drop-in
# other than the program's 10-delivery.conf that sets ExecStart or listeners.
#
# Nothing is deleted. A file the program is going to replace is copied next to itself as
# <file>.pre-adoption-<UTC time>; a hand-made drop-in is renamed that way (systemd reads only
# *.conf); a hand-made container is stopped, renamed <name>-pre-adoption-<UTC time> and set to
# restart=no (its data are bind mounts under /srv, which the program's container mounts).
# Every check that can refuse runs before anything changes.
set -euo pipefail

mode=${1:?usage: adopt-host.sh MODE ROLES GITLAB_IMAGE JOB_WAIT_SECONDS WILDCARD_DOMAIN}
roles=",${2:-},"
gitlab_image=${3:--}
job_wait=${4:-1800}
wildcard=${5:-}
case $mode in check|apply) ;; *) echo "MODE must be check or apply" >&2; exit 2 ;; esac

ts=$(date -u +%Y%m%dT%H%M%SZ)
suffix=".pre-adoption-$ts"
DROPINS=/etc/systemd/system/docker.service.d
OURS=10-delivery.conf
CONFIG_STATE=/var/lib/delivery/docker-config.applied
GITLAB_SRV=/srv/services/gitlab
GITLAB_RB=$GITLAB_SRV/config/gitlab.rb
RUNNER_TOML=/srv/gitlab-runner/config/config.toml
TRAEFIK_YML=/srv/traefik/traefik.yml
# The procedure's copy of Staging's client certificate for Traefik; the program's Traefik step
# removes these (its review instance has its own), so they are kept as copies first.
STAGING_CERTS=(/srv/traefik/certs/staging/ca.pem /srv/traefik/certs/staging/cert.pem /srv/traefik/certs/staging/key.pem)

wanted_rb=$(cat || true)
found=()
plan=()
actions=0
note() { found+=("$1"); }
will() { plan+=("$1"); actions=$((actions + 1)); }
# what stays as it is (listed by the check, no action of the step)
stays() { plan+=("$1"); }
has_role() { [[ $roles == *",$1,"* ]]; }

docker_up() { command -v docker >/dev/null && docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

# usage: hand_made NAME  (a container of that name exists and the program did not create it:
# the program labels every container it runs delivery.managed-by=pulumi)
hand_made() {
  docker_up || return 1
  local labels
  labels=$(docker inspect -f '{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' "$1" 2>/dev/null) || return 1
  ! grep -qx 'delivery\.managed-by=pulumi' <<<"$labels"
}

# Secret-looking values never reach the output (it is kept in the stack's state).
mask() { sed -E 's/((password|secret|token|key|pass)[^=]*=[[:space:]]*).*/\1<hidden>/I'; }

# -- what is there ----------------------------------------------------------------------------
foreign_dropins=()
for f in "$DROPINS"/*.conf; do
  [ -e "$f" ] || continue
  [ "$(basename "$f")" != "$OURS" ] || continue
  if grep -qE '^[[:space:]]*ExecStart=.+|(^|[[:space:]])(-H|--host|--tls)' "$f"; then foreign_dropins+=("$f"); fi
done
for f in "${foreign_dropins[@]}"; do
  note "hand-made docker drop-in $f: $(grep -E '^[[:space:]]*ExecStart=.+' "$f" | tail -n 1 | mask)"
  will "rename $f to $(basename "$f")$suffix (kept; systemd ignores it); Docker restarts once with the program's daemon.json and TLS files"
done
if [ -f /etc/docker/daemon.json ] && [ ! -f "$CONFIG_STATE" ]; then
  note "daemon.json not written by this program: $(tr -d '\n' < /etc/docker/daemon.json | cut -c1-200)"
  will "copy /etc/docker/daemon.json to daemon.json$suffix; the program's replaces it"
fi
live_restore=
if docker_up; then
  live_restore=$(docker info --format '{{.LiveRestoreEnabled}}')
  note "docker $(docker info --format '{{.ServerVersion}}'), live-restore $live_restore, running containers: $(docker ps --format '{{.Names}}' | sort | tr '\n' ' ')"
  if [ "$live_restore" != true ]; then
    will "turn live-restore on in the running daemon (daemon.json + reload, no restart), so running containers survive the one restart"
  fi
fi
for d in /home/*/.docker /root/.docker; do
  [ -f "$d/server-cert.pem" ] || continue
  note "hand-made Docker TLS files in $d (the listener no longer uses them after the restart; they are left in place, remove them when you are sure; ca-key.pem there signs clients the old listener accepted)"
done

gitlab_adopt='' traefik_adopt='' runner_adopt=''
if has_role gitlab && hand_made gitlab; then
  image=$(docker inspect -f '{{.Config.Image}}' gitlab)
  mounts=$(docker inspect -f '{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}' gitlab)
  note "hand-made gitlab container ($image; mounts: $mounts)"
  for m in config:/etc/gitlab data:/var/opt/gitlab logs:/var/log/gitlab; do
    if [[ " $mounts " != *" $GITLAB_SRV/${m%%:*}:${m#*:} "* ]]; then
      echo "refusing to adopt: the hand-made gitlab container does not mount $GITLAB_SRV/${m%%:*} at ${m#*:}; its data would not follow (nothing was changed)" >&2
      exit 1
    fi
  done
  if [ "$gitlab_image" != - ] && [ "$image" != "$gitlab_image" ]; then
    echo "refusing to adopt: the hand-made gitlab runs $image, the program would run $gitlab_image; set delivery:gitlabVersion to ${image##*:} for the adoption (an upgrade is a separate, later step; nothing was changed)" >&2
    exit 1
  fi
  [ ! -f "$GITLAB_SRV/config/gitlab-secrets.json" ] || note "gitlab-secrets.json present: kept as it is"
  will "copy gitlab.rb to gitlab.rb$suffix; the program's gitlab.rb replaces it; stop the hand-made gitlab and rename it gitlab$suffix (restart=no); the program's gitlab ($gitlab_image) starts on the same $GITLAB_SRV/{config,data,logs}"
  gitlab_adopt=1
fi
if has_role traefik && hand_made traefik; then
  note "hand-made traefik container ($(docker inspect -f '{{.Config.Image}}' traefik)); ACME store: $(find /srv/traefik/letsencrypt -maxdepth 1 -name 'acme*.json' -printf '%f ' 2>/dev/null)"
  will "copy $TRAEFIK_YML to traefik.yml$suffix; keep /srv/traefik/letsencrypt/acme.json (no certificate is re-issued); stop the hand-made traefik and rename it traefik$suffix (restart=no); the program's Traefik replaces it"
  traefik_adopt=1
  for f in "${STAGING_CERTS[@]}"; do
    [ ! -f "$f" ] || will "copy $f to $(basename "$f")$suffix (the program's Traefik step removes it: the review instance has its own client certificate)"
  done
fi
if { has_role production-runner || has_role staging-runner; } && hand_made gitlab-runner; then
  note "hand-made gitlab-runner container ($(docker inspect -f '{{.Config.Image}}' gitlab-runner)), runners in config.toml: $(grep -c '^\[\[runners\]\]' "$RUNNER_TOML" 2>/dev/null || echo 0)"
  will "wait up to ${job_wait}s for running jobs; unregister the old runners (gitlab-runner unregister --all-runners); copy config.toml to config.toml$suffix; stop and rename gitlab-runner$suffix (restart=no); the program's runner (created through the API, glrt- token) replaces it"
  runner_adopt=1
fi
retire_le=
if has_role traefik && hand_made letsencrypt-dns; then
  note "hand-made letsencrypt-dns container"
  if [ -n "$wildcard" ] && { grep -qsF "\"*.$wildcard\"" /srv/traefik/letsencrypt/acme*.json || compgen -G "/srv/traefik/certs/wildcard/*.pem" >/dev/null; }; then
    will "retire letsencrypt-dns (stop, rename letsencrypt-dns$suffix, restart=no): the program's wildcard method has a certificate for *.$wildcard"
    retire_le=1
  else
    stays "keep letsencrypt-dns running: the program's wildcard method has no certificate for *.$wildcard yet (make adopt-check shows when it has; docs/adopt.md)"
  fi
fi

if [ "$mode" = check ]; then
  echo "found on $(hostname):"
  if [ ${#found[@]} -eq 0 ]; then echo "  nothing hand-made"; else printf '  - %s\n' "${found[@]}"; fi
  echo "the first up will:"
  if [ ${#plan[@]} -eq 0 ]; then echo "  nothing (no adoption needed)"; else printf '  - %s\n' "${plan[@]}"; fi
  if [ -n "$gitlab_adopt" ] && [ -n "$wanted_rb" ] && [ -f "$GITLAB_RB" ]; then
    echo "gitlab.rb differences (hand-made -> program's; secret-looking values hidden):"
    diff -u "$GITLAB_RB" <(printf '%s\n' "$wanted_rb") | mask || true
  fi
  exit 0
fi

if [ "$actions" -eq 0 ]; then
  [ ${#plan[@]} -eq 0 ] || printf '%s\n' "${plan[@]}" >&2
  echo "unchanged"
  exit 0
fi

# -- apply: the waits that can refuse first, then the changes --------------------------------
done_=()
keep() { cp -a "$1" "$1$suffix"; done_+=("kept $1 as $(basename "$1")$suffix"); }
# usage: retire NAME  (stop, rename, no restart: the container stays, its data are bind mounts)
retire() {
  docker update --restart=no "$1" >/dev/null
  docker stop -t "${2:-30}" "$1" >/dev/null
  docker rename "$1" "$1$suffix"
  done_+=("stopped $1, renamed $1$suffix")
}

if [ -n "$runner_adopt" ]; then
  waited=0
  while [ -n "$(docker ps -q --filter label=com.gitlab.gitlab-runner.managed=true)" ]; do
    if [ "$waited" -ge "$job_wait" ]; then
      echo "CI jobs still run after ${waited}s on the hand-made runner; nothing was changed, run again later" >&2
      exit 1
    fi
    sleep 5
    waited=$((waited + 5))
  done
  docker exec gitlab-runner gitlab-runner unregister --all-runners >&2
  done_+=("unregistered the old runners (waited ${waited}s for jobs)")
  [ ! -f "$RUNNER_TOML" ] || keep "$RUNNER_TOML"
  retire gitlab-runner
fi

if [ -n "$live_restore" ] && [ "$live_restore" != true ]; then
  cfg=/etc/docker/daemon.json
  [ ! -f "$cfg" ] || keep "$cfg"
  current=$(cat "$cfg" 2>/dev/null || echo '{}')
  if grep -q '"live-restore"' <<<"$current"; then
    new=$(sed -E 's/"live-restore"[[:space:]]*:[[:space:]]*false/"live-restore": true/' <<<"$current")
  elif grep -qE '^[[:space:]]*\{[[:space:]]*\}[[:space:]]*$' <<<"$(tr -d '\n' <<<"$current")"; then
    new='{"live-restore": true}'
  else
    new=$(sed -E '0,/\{/s//{"live-restore": true, /' <<<"$current")
  fi
  install -d -m 0755 /etc/docker
  printf '%s\n' "$new" > "$cfg.adopt-tmp"
  mv -f "$cfg.adopt-tmp" "$cfg"
  systemctl reload docker.service
  for _ in $(seq 1 30); do
    [ "$(docker info --format '{{.LiveRestoreEnabled}}' 2>/dev/null)" = true ] && break
    sleep 1
  done
  if [ "$(docker info --format '{{.LiveRestoreEnabled}}')" != true ]; then
    echo "live-restore did not turn on by reload; Docker was not restarted, the drop-ins are as they were" >&2
    exit 1
  fi
  done_+=("live-restore on (reload, no restart)")
elif [ -f /etc/docker/daemon.json ] && [ ! -f "$CONFIG_STATE" ]; then
  keep /etc/docker/daemon.json
fi

if [ -n "$traefik_adopt" ]; then
  [ ! -f "$TRAEFIK_YML" ] || keep "$TRAEFIK_YML"
  for f in "${STAGING_CERTS[@]}"; do [ ! -f "$f" ] || keep "$f"; done
  retire traefik
fi
if [ -n "$gitlab_adopt" ]; then
  keep "$GITLAB_RB"
  if [ -n "$wanted_rb" ]; then
    echo "gitlab.rb differences (hand-made -> program's; secret-looking values hidden):" >&2
    diff -u "$GITLAB_RB" <(printf '%s\n' "$wanted_rb") | mask >&2 || true
  fi
  retire gitlab 120
fi
if [ -n "$retire_le" ]; then retire letsencrypt-dns; fi

# Last, so that a failure above leaves Docker's own configuration as it was.
for f in "${foreign_dropins[@]}"; do
  mv "$f" "$f$suffix"
  done_+=("renamed $f to $(basename "$f")$suffix")
done

echo "adopted: $(IFS=';'; echo "${done_[*]}")"
