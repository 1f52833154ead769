"""The /srv layout each role needs on its host (the seed's folder layout)."""

from __future__ import annotations

from ..config import HostConfig
from .docker_host import Directory

#: Folders per role; stateful data of container <c> of project <p> lives in /srv/<p>/<c>/.
ROLE_DIRECTORIES: dict[str, tuple[Directory, ...]] = {
    "gitlab": (
        Directory("/srv/services/gitlab/config", 0o755),
        Directory("/srv/services/gitlab/data", 0o755),
        Directory("/srv/services/gitlab/logs", 0o755),
    ),
    "traefik": (
        Directory("/srv/traefik", 0o755),
        Directory("/srv/traefik/certs", 0o700),
        Directory("/srv/traefik/certs/wildcard", 0o700),
        Directory("/srv/traefik/dynamic", 0o700),
        Directory("/srv/traefik/letsencrypt", 0o700),
        Directory("/srv/traefik/logs", 0o755),
        Directory("/srv/traefik/secrets", 0o700),
        Directory("/srv/traefik/secrets/dns", 0o700),
        # The review instance: its static config, Staging's client certificate, its access log.
        Directory("/srv/traefik/review", 0o755),
        Directory("/srv/traefik/review/certs", 0o700),
        Directory("/srv/traefik/review/logs", 0o755),
        # dnsrobocert (the seed's letsencrypt-dns): its config and certbot's state
        Directory("/srv/letsencrypt-dns", 0o700),
        Directory("/srv/letsencrypt-dns/config", 0o700),
        Directory("/srv/letsencrypt-dns/letsencrypt", 0o700),
    ),
    "production-runner": (Directory("/srv/gitlab-runner/config", 0o700),),
    "staging-runner": (
        Directory("/srv/gitlab-runner/config", 0o700),
        Directory("/srv/gitlab-runner/cache", 0o755),
        Directory("/srv/gitlab-runner/jobs", 0o755),
    ),
    "review-apps": (),
}


def directories_for(host: HostConfig, extra: tuple[Directory, ...] = ()) -> tuple[Directory, ...]:
    dirs = {d.path: d for role in host.roles for d in ROLE_DIRECTORIES[role]}
    for d in extra:
        dirs[d.path] = d
    return tuple(sorted(dirs.values(), key=lambda d: d.path))
