#!/bin/sh
# Entrypoint of the mongo service. A replica set that enforces authentication
# needs a key file for its members; this makes one on first start (kept in the
# mongo-config volume), then hands over to the image's own entrypoint, which
# creates the root user and runs initdb/ once and drops to the mongodb user.
set -eu

key_file="${MONGO_KEY_FILE:-/data/configdb/replica-set.key}"
if [ ! -s "$key_file" ]; then
    (umask 077 && head -c 756 /dev/urandom | base64 -w 0 > "$key_file")
fi
chown mongodb:mongodb "$key_file"
chmod 400 "$key_file"

exec docker-entrypoint.sh "$@"
