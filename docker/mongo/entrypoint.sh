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

# With docker-compose.tls.yml, mongod (run as the mongodb user) reads its
# certificate and key from MONGO_TLS_CERTIFICATE_KEY_FILE, a memory-only
# directory; the operator's copy, MONGO_TLS_CERTIFICATE_KEY_SOURCE, may be
# readable by root only. Copied on every start, so a replaced file is used
# after a restart. Without these variables nothing changes.
if [ -n "${MONGO_TLS_CERTIFICATE_KEY_SOURCE:-}" ]; then
    tls_file="${MONGO_TLS_CERTIFICATE_KEY_FILE:?MONGO_TLS_CERTIFICATE_KEY_FILE names where mongod reads the copy}"
    install -d -o mongodb -g mongodb -m 700 "$(dirname "$tls_file")"
    install -o mongodb -g mongodb -m 400 "$MONGO_TLS_CERTIFICATE_KEY_SOURCE" "$tls_file"
fi

exec docker-entrypoint.sh "$@"
