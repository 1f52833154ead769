#!/bin/sh
# Options alone (e.g. --configFile=...) are Traefik's: run traefik with them; anything else runs as given.
set -e
case "${1:-}" in
  -*) set -- traefik "$@" ;;
esac
exec "$@"
