#!/bin/sh
# Entrypoint of the Redis servers of docker-compose.sentinel.yml (`redis`, the
# first master, and `redis-2`, its replica). The arguments are redis-server
# options (persistence); this adds the password and the name the server is
# announced under, then hands over to the image's own entrypoint, which drops
# to the redis user.
#
# Sentinel moves the master: on a failover it tells each server whom to
# replicate (REPLICAOF) and has it save that in its configuration file
# (CONFIG REWRITE). So each server keeps a configuration file of its own in its
# data volume, written here on the first start only: `replicaof` comes from
# REDIS_REPLICA_OF then ("host port", empty for the first master) and from
# Sentinel's rewrites ever after. A restarted server therefore comes back in
# the role Sentinel last gave it, never as a replica of a stale master.
#
# The password (REDIS_PASSWORD) is passed to redis-server on every start, as
# the one clients use (requirepass) and the one a replica uses to sync from the
# master (masterauth: every server may become a replica after a failover). It
# is never written by this script; CONFIG REWRITE copies it into the
# configuration file inside the volume, where the options given here override
# it on the next start, so changing REDIS_PASSWORD needs only a restart.
set -eu

: "${REDIS_PASSWORD:?REDIS_PASSWORD is not set}"
: "${REDIS_ANNOUNCE_HOST:?REDIS_ANNOUNCE_HOST (the name other containers reach this server by) is not set}"
config="${REDIS_CONFIG_FILE:-/data/redis.conf}"

# Files readable by their owner only, also those redis-server writes (CONFIG
# REWRITE copies the password into the configuration file).
umask 077
if [ ! -e "$config" ]; then
    {
        echo "# Written on the first start by docker/redis-sentinel/server-entrypoint.sh;"
        echo "# Redis Sentinel rewrites it (CONFIG REWRITE) when it moves the master."
        if [ -n "${REDIS_REPLICA_OF:-}" ]; then
            echo "replicaof ${REDIS_REPLICA_OF}"
        fi
    } > "$config.new"
    mv "$config.new" "$config"
fi

# Announced by name, so the sentinels hand out names that survive a container's
# new address (they resolve names: see sentinel-entrypoint.sh).
exec docker-entrypoint.sh redis-server "$config" \
    --replica-announce-ip "$REDIS_ANNOUNCE_HOST" \
    --requirepass "$REDIS_PASSWORD" \
    --masterauth "$REDIS_PASSWORD" \
    "$@"
