#!/bin/sh
# Entrypoint of the sentinels of docker-compose.sentinel.yml. Writes the
# sentinel's configuration file on its first start and hands over to the
# image's own entrypoint (`redis-server <file> --sentinel`, as the redis user).
#
# Sentinel rewrites its configuration file as it learns the topology (the
# current master, the replicas, the other sentinels, the failover epoch), so
# the file lives in the sentinel's own volume and is written here only when it
# does not exist yet: after a failover a restarted sentinel still knows which
# server is the master. The sentinel's own settings are set again from the
# environment on every start:
#   - `sentinel auth-pass`: the password of the Redis servers (REDIS_PASSWORD),
#     which the sentinels need to watch and reconfigure them;
#   - `down-after-milliseconds` and `failover-timeout`.
# The password is written to the file with the shell's printf (a builtin, so it
# never appears in a process list), with the file readable by its owner only.
#
# The sentinels themselves have no password: callqueue's clients (kombu, Celery's
# result backend and redis-py) ask the sentinels without one and use the URL's
# password for the master only. Keep port 26379 off every network but the
# application's.
set -eu

: "${REDIS_PASSWORD:?REDIS_PASSWORD is not set}"
: "${SENTINEL_MASTER_NAME:?SENTINEL_MASTER_NAME is not set}"
: "${SENTINEL_MASTER_HOST:?SENTINEL_MASTER_HOST (the first master) is not set}"
: "${SENTINEL_ANNOUNCE_HOST:?SENTINEL_ANNOUNCE_HOST (the name other sentinels reach this one by) is not set}"
master_port="${SENTINEL_MASTER_PORT:-6379}"
quorum="${SENTINEL_QUORUM:-2}"
down_after_ms="${SENTINEL_DOWN_AFTER_MS:-3000}"
failover_timeout_ms="${SENTINEL_FAILOVER_TIMEOUT_MS:-10000}"
config="${SENTINEL_CONFIG_FILE:-/data/sentinel.conf}"
name="$SENTINEL_MASTER_NAME"

# Files readable by their owner only, also those the sentinel rewrites.
umask 077
if [ ! -s "$config" ]; then
    {
        echo "# Written on the first start by docker/redis-sentinel/sentinel-entrypoint.sh;"
        echo "# the sentinel rewrites it as it learns the topology."
        echo "port 26379"
        echo "dir $(dirname "$config")"
        # Reached from the other containers of the network, without a password.
        echo "protected-mode no"
        # Names, not addresses: a container gets a new address when it is recreated.
        # (resolve-hostnames must come before `sentinel monitor`.)
        echo "sentinel resolve-hostnames yes"
        echo "sentinel announce-hostnames yes"
        echo "sentinel announce-ip $SENTINEL_ANNOUNCE_HOST"
        echo "sentinel monitor $name $SENTINEL_MASTER_HOST $master_port $quorum"
        echo "sentinel parallel-syncs $name 1"
    } > "$config.new"
    mv "$config.new" "$config"
fi

if ! grep -q "^sentinel monitor $name " "$config"; then
    echo "$config watches another master than '$name' (SENTINEL_MASTER_NAME):" \
         "keep the name it was first started with, or remove this sentinel's volume" >&2
    exit 1
fi

# The settings that come from the environment, set again on every start (after
# the `sentinel monitor` line, as Sentinel requires).
sed -i -e "/^sentinel auth-pass $name /d" \
       -e "/^sentinel down-after-milliseconds $name /d" \
       -e "/^sentinel failover-timeout $name /d" "$config"
{
    printf 'sentinel auth-pass %s %s\n' "$name" "$REDIS_PASSWORD"
    printf 'sentinel down-after-milliseconds %s %s\n' "$name" "$down_after_ms"
    printf 'sentinel failover-timeout %s %s\n' "$name" "$failover_timeout_ms"
} >> "$config"

exec docker-entrypoint.sh redis-server "$config" --sentinel "$@"
