#!/usr/bin/env bash
# Make sure the Redis in REDIS_URL answers; start a local redis-server on 127.0.0.1:6379 if it
# is the default address and one is installed; otherwise say what to install.
set -euo pipefail
url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
hostport="${url#redis://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$host" ] && port=6379
answers() { (exec 3<>"/dev/tcp/$host/$port" && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
answers && exit 0
if [ "$host" != "127.0.0.1" ] && [ "$host" != "localhost" ]; then
  echo "Redis at $host:$port does not answer (REDIS_URL=$url)." >&2; exit 1
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "Redis is not running on $host:$port and redis-server is not installed." >&2
  echo "Install it (Debian: apt-get install redis-server) or set REDIS_URL." >&2
  exit 1
fi
mkdir -p var
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir "$(pwd)/var" --logfile "$(pwd)/var/redis.log"
for _ in $(seq 1 50); do answers && { echo "Started redis-server on $host:$port"; exit 0; }; sleep 0.1; done
echo "redis-server did not start; see var/redis.log" >&2; exit 1
