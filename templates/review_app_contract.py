"""The contract between the review-app template (templates/review-app.yml) and Traefik.

One place for the names both sides must agree on. tests/test_review_app_template.py checks
the template's labels against these constants, and against a rendered Traefik static config
(``check_labels_against_traefik``): when the Traefik component renders its config, point that
check at the real dict. The Traefik component may import this module too.

Two Traefik v3 instances run on Production (docs/services.md, "Two Traefik instances"):

* the edge (public :443) ends TLS with the wildcard certificate and forwards exactly the hosts
  <one label>.<REVIEW_SUBDOMAIN>.<domain> to the review instance; no label changes the edge;
* the review instance's Docker provider watches Staging's daemon over mutual TLS; it has one
  plain-HTTP entrypoint (REVIEW_ENTRYPOINT) and no file provider, no API, no TLS.

A review app is served when its container on Staging carries the labels below and publishes
its port on Staging's address (Traefik uses the bound host IP and port: useBindPortIP).
"""

from __future__ import annotations

import re

# --- The edge's static config (entryPoints) --------------------------------------------------
ENTRYPOINT_WEB = "web"  # :80, redirects to websecure (https)
ENTRYPOINT_WEBSECURE = "websecure"  # :443, TLS: where review hosts arrive
ENTRYPOINT_ADDRESSES = {ENTRYPOINT_WEB: ":80", ENTRYPOINT_WEBSECURE: ":443"}

# --- The review instance's static config -----------------------------------------------------
# Its only entrypoint, plain HTTP on the internal network (the template's input
# `traefik_entrypoint` default). TLS ends at the edge: review routers set no tls.
REVIEW_ENTRYPOINT = "review"
REVIEW_ENTRYPOINT_ADDRESS = ":80"
REVIEW_CONTAINER = "traefik-review"  # the edge forwards review hosts to http://traefik-review:80

# --- Traefik static config (providers.docker) ------------------------------------------------
DOCKER_PROVIDER_EXPOSED_BY_DEFAULT = False  # so every review container needs traefik.enable=true
DOCKER_PROVIDER_USE_BIND_PORT_IP = True  # Traefik reaches the app through the bound host port
DOCKER_ENDPOINT_SCHEME = "tcp://"  # Staging's daemon, TCP 2376, mutual TLS
DOCKER_ENDPOINT_PORT = 2376
DOCKER_PROVIDER_TLS_KEYS = ("ca", "cert", "key")  # mutual TLS: CA + Traefik's client cert

# --- Certificates and middlewares ------------------------------------------------------------
# Review hosts are <one label>.<REVIEW_SUBDOMAIN>.<domain>; the edge serves them with the
# wildcard certificate "*.<REVIEW_SUBDOMAIN>.<domain>" (ACME DNS-01 or a delivered file) and
# adds the security headers itself.
REVIEW_SUBDOMAIN = "dev"
# Middlewares review routers use (the template's input `middlewares` default): none. The review
# instance has no file provider; a router may use middlewares its own labels define (@docker).
REVIEW_MIDDLEWARES: tuple[str, ...] = ()

# --- Labels the template sets ----------------------------------------------------------------
LABEL_ENABLE = "traefik.enable"
LABEL_PROJECT = "delivery.review-app.project"  # $CI_PROJECT_PATH: clean-up job's filter
LABEL_REF = "delivery.review-app.ref"  # $CI_COMMIT_REF_NAME: compared with the branch list
CONTAINER_NAME_FORMAT = "review-{project_path_slug}-{ref_slug}"  # also router/service name

# --- Grammar -----------------------------------------------------------------------------------
# Traefik object names: no dots (they separate label keys), no "@" (provider separator).
ROUTER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# A DNS label as GitLab's slugs produce it.
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Traefik v3 rule: exactly one host in backticks (v3 has no multi-argument Host()).
HOST_RULE_RE = re.compile(r"^Host\(`(?P<host>[a-z0-9]([a-z0-9.-]*[a-z0-9])?)`\)$")


def wildcard_for(review_domain: str) -> str:
    """The certificate name that covers review hosts under review_domain (dev.<domain>)."""
    return f"*.{review_domain}"


def review_domain_for(domain: str) -> str:
    return f"{REVIEW_SUBDOMAIN}.{domain}"
