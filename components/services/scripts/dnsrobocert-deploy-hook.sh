#!/usr/bin/env bash
# dnsrobocert's deploy hook: hand a new or renewed wildcard certificate to Traefik.
#
# Runs inside the dnsrobocert container (Debian with bash) after certbot issued or renewed a certificate
# (RENEWED_LINEAGE is its live/ folder). The certificate and key are copied into
# Traefik's certificate folder (atomically: temp file, then rename), then the reload
# stamp in Traefik's watched dynamic-config folder is rewritten in place. That write
# makes Traefik's file provider reload, which re-reads the certificate files: the new
# certificate is served without a restart and without manual copying.
#
# Mounts (components/services/wildcard_certificate.py): /traefik/certs is /srv/traefik/certs/wildcard,
# /traefik/reload.stamp is /srv/traefik/dynamic/wildcard-reload.stamp.
set -euo pipefail

lineage=${RENEWED_LINEAGE:?RENEWED_LINEAGE is not set: run by dnsrobocert only}
dest=${TRAEFIK_CERTS_DIR:-/traefik/certs}
stamp=${TRAEFIK_RELOAD_STAMP:-/traefik/reload.stamp}
umask 077

for name in fullchain.pem privkey.pem; do
  if [ ! -s "$lineage/$name" ]; then
    echo "deploy hook: $lineage/$name is missing or empty; Traefik keeps its certificate" >&2
    exit 1
  fi
done
for name in fullchain.pem privkey.pem; do
  cp -L "$lineage/$name" "$dest/.$name.tmp"
  mv -f "$dest/.$name.tmp" "$dest/$name"
done
# Rewrite in place (same inode): the stamp is a single-file bind mount.
date -u '+%Y-%m-%dT%H:%M:%SZ' > "$stamp"
echo "deploy hook: delivered $(basename "$lineage") to Traefik"
