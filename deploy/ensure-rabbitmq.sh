#!/usr/bin/env bash
# Make sure a RabbitMQ answers at GATEWAY_AMQP_URL before the demo starts.
# 1. something answers: done;  2. rabbitmq-server installed: start it;
# 3. running as root with apt-get: install it, then start it;  4. otherwise: say what to do.
set -euo pipefail
url="${GATEWAY_AMQP_URL:-amqp://guest:guest@localhost:5672/}"
hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"
[ "$port" = "$hostport" ] && port=5672

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; }
wait_for_it() {
  for _ in $(seq 1 90); do answers && return 0; sleep 1; done
  return 1
}
if answers; then exit 0; fi

local_host=false
case "$host" in localhost|127.0.0.1|::1) local_host=true ;; esac
if $local_host && ! command -v rabbitmq-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null 2>&1; then
  echo "No RabbitMQ at $host:$port; installing rabbitmq-server with apt-get (running as root)..."
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server >/dev/null; }
fi
if $local_host && command -v rabbitmq-server >/dev/null 2>&1; then
  echo "No RabbitMQ at $host:$port; starting the local one (rabbitmq-server -detached)..."
  if rabbitmq-server -detached >/dev/null 2>&1 && wait_for_it; then exit 0; fi
  echo "Could not start rabbitmq-server here (it may need root: sudo rabbitmq-server -detached)." >&2
fi
cat >&2 <<MSG
No RabbitMQ answers at $host:$port (GATEWAY_AMQP_URL=$url).
Do one of these, then run 'make demo' again:
  - start the pinned broker and PostgreSQL:   docker compose -f deploy/compose.yaml up -d
  - install RabbitMQ 3.10 or newer:           sudo apt-get install rabbitmq-server && sudo rabbitmq-server -detached
                                              (Ubuntu 22.04 ships 3.9, which the gateway refuses: use the compose file)
  - point the gateway at a running broker:    export GATEWAY_AMQP_URL=amqp://user:pass@host:5672/
MSG
exit 1
