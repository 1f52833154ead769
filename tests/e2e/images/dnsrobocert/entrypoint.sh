#!/bin/sh
# The official image's start (docker/run.sh of adferrand/dnsrobocert v3.26.1, reproduced, not
# copied): optional $TIMEZONE, a draft config when none is there (and no legacy domains.conf),
# then dnsrobocert in the foreground on $CONFIG_PATH with its certbot directory $CERTS_PATH.
if [ -n "${TIMEZONE:-}" ]; then
  if [ -f "/usr/share/zoneinfo/$TIMEZONE" ]; then
    echo "Setting timezone to $TIMEZONE"
    cp "/usr/share/zoneinfo/$TIMEZONE" /etc/localtime
    echo "$TIMEZONE" > /etc/timezone
  else
    echo "$TIMEZONE does not exist"
  fi
fi
if [ ! -f /etc/letsencrypt/domains.conf ] && [ ! -f "$CONFIG_PATH" ]; then
  echo "draft: true" >> "$CONFIG_PATH"
fi
export PATH="${HOME:-/root}/.local/bin:$PATH"
exec dnsrobocert -c "$CONFIG_PATH" -d "$CERTS_PATH"
