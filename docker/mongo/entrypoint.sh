#!/bin/sh
# Entrypoint of the mongo services. A replica set that enforces authentication
# needs one key file shared by all its members; this makes it on first start
# (kept in the mongo-config volume), then hands over to the image's own
# entrypoint, which creates the root user and runs initdb/ once and drops to
# the mongodb user.
#
# The members of docker-compose.replicaset.yml share the mongo-config volume and
# may start at the same moment: each writes a candidate key to a file of its
# own and links it into place; `ln` never replaces an existing file, so the
# first key wins and every member reads that one.
set -eu

key_file="${MONGO_KEY_FILE:-/data/configdb/replica-set.key}"
if [ ! -s "$key_file" ]; then
    candidate="$key_file.$(hostname)"
    (umask 077 && head -c 756 /dev/urandom | base64 -w 0 > "$candidate")
    ln "$candidate" "$key_file" 2>/dev/null || [ -s "$key_file" ] || mv -f "$candidate" "$key_file"
    rm -f "$candidate"
fi
chown mongodb:mongodb "$key_file"
chmod 400 "$key_file"

exec docker-entrypoint.sh "$@"
