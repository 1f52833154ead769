"""The contract between the review-app template (templates/review-app.yml) and Traefik.

One place for the names both sides must agree on. tests/test_review_app_template.py checks
the template's labels against these constants, and against a rendered Traefik static config
(``check_labels_against_traefik``): when the Traefik component renders its config, point that
check at the real dict. The Traefik component may import this module too.

Traefik v3 runs on Production; its Docker provider watches Staging's daemon over mutual TLS.
A review app is served when its container on Staging carries the labels below and publishes
its port on Staging's address (Traefik uses the bound host IP and port: useBindPortIP).
"""

from __future__ import annotations

import re

# --- Traefik static config (entryPoints) -----------------------------------------------------
ENTRYPOINT_WEB = "web"  # :80, redirects to websecure (https)
ENTRYPOINT_WEBSECURE = "websecure"  # :443, TLS
ENTRYPOINT_ADDRESSES = {ENTRYPOINT_WEB: ":80", ENTRYPOINT_WEBSECURE: ":443"}

# The entrypoint review routers use (the template's input `traefik_entrypoint` default).
REVIEW_ENTRYPOINT = ENTRYPOINT_WEBSECURE

# --- Traefik static config (providers.docker) ------------------------------------------------
DOCKER_PROVIDER_EXPOSED_BY_DEFAULT = False  # so every review container needs traefik.enable=true
DOCKER_PROVIDER_USE_BIND_PORT_IP = True  # Traefik reaches the app through the bound host port
DOCKER_ENDPOINT_SCHEME = "tcp://"  # Staging's daemon, TCP 2376, mutual TLS
DOCKER_ENDPOINT_PORT = 2376
DOCKER_PROVIDER_TLS_KEYS = ("ca", "cert", "key")  # mutual TLS: CA + Traefik's client cert

# --- Certificates and middlewares ------------------------------------------------------------
# Review hosts are <one label>.<REVIEW_SUBDOMAIN>.<domain>; the wildcard certificate
# "*.<REVIEW_SUBDOMAIN>.<domain>" is in Traefik's store (ACME DNS-01 or file provider), so a
# review router only sets tls=true (no certresolver).
REVIEW_SUBDOMAIN = "dev"
ROUTER_TLS = "true"
# Middleware review routers use (the template's input `middlewares` default); it lives in the
# dynamic config rendered by the file provider.
REVIEW_MIDDLEWARES = ("security-headers@file",)

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
