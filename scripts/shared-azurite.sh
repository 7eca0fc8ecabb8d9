# Sourced by scripts/test.sh and scripts/reliability.sh: starts the run's shared Azurites,
# strict mode and in memory as tests/support/azurite.rs starts its private ones, on free
# loopback ports, and exports where they listen so every test process that only needs a
# storage account uses one, under its own queue and container names:
#   - shared-key (plain http): AZURITE_SHARED_BLOB_PORT, AZURITE_SHARED_QUEUE_PORT;
#   - OAuth over HTTPS (`--oauth basic`, for identity-based storage): AZURITE_IDENTITY_BLOB_PORT,
#     AZURITE_IDENTITY_QUEUE_PORT, and AZURITE_IDENTITY_CA, the test CA that signed its
#     certificate (scripts/make-test-ca.sh).
# Stopped on exit. If the ports are already exported (test.sh started them and runs
# reliability.sh), nothing is started.

shared_azurite_pids=()
shared_azurite_dirs=()

stop_shared_azurite() {
  local pid dir
  for pid in "${shared_azurite_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  shared_azurite_pids=()
  for dir in "${shared_azurite_dirs[@]}"; do rm -rf "$dir"; done
  shared_azurite_dirs=()
}

# launch_shared_azurite NAME [extra Azurite arguments...]: starts one and exports
# AZURITE_<NAME>_BLOB_PORT and AZURITE_<NAME>_QUEUE_PORT.
launch_shared_azurite() {
  local name=$1
  shift
  local bin=${AZURITE_BIN:?AZURITE_BIN names the Azurite to start}
  local dir attempt ports blob queue table pid waited
  dir=$(mktemp -d "${TMPDIR:-/tmp}/azurite-shared.XXXXXX")
  shared_azurite_dirs+=("$dir")
  # A probed free port can be taken before Azurite binds it: on an early exit, try new ones.
  for attempt in 1 2 3 4 5; do
    ports=$(python3 -c 'import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
    read -r blob queue table <<<"$ports"
    (cd "$dir" && exec "$bin" --silent --disableTelemetry --skipApiVersionCheck \
      --inMemoryPersistence \
      --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 \
      --blobPort "$blob" --queuePort "$queue" --tablePort "$table" "$@" >/dev/null) &
    pid=$!
    for waited in $(seq 1 600); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if (exec 3<>"/dev/tcp/127.0.0.1/$blob") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$queue") 2>/dev/null; then
        shared_azurite_pids+=("$pid")
        export "AZURITE_${name}_BLOB_PORT=$blob" "AZURITE_${name}_QUEUE_PORT=$queue"
        echo "shared Azurite $name (pid $pid): blob $blob, queue $queue"
        return 0
      fi
      sleep 0.05
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "shared Azurite $name did not start (tried 5 times)" >&2
  return 1
}

start_shared_azurite() {
  trap stop_shared_azurite EXIT
  if [ -z "${AZURITE_SHARED_BLOB_PORT:-}" ] || [ -z "${AZURITE_SHARED_QUEUE_PORT:-}" ]; then
    launch_shared_azurite SHARED || return 1
  fi
  if [ -z "${AZURITE_IDENTITY_BLOB_PORT:-}" ] || [ -z "${AZURITE_IDENTITY_QUEUE_PORT:-}" ]; then
    local certs
    certs=$(mktemp -d "${TMPDIR:-/tmp}/azurite-certs.XXXXXX")
    shared_azurite_dirs+=("$certs")
    bash "$(dirname "${BASH_SOURCE[0]}")/make-test-ca.sh" "$certs" || return 1
    launch_shared_azurite IDENTITY --oauth basic --cert "$certs/leaf.pem" --key "$certs/leaf.key" \
      || return 1
    export AZURITE_IDENTITY_CA="$certs/ca.pem"
  fi
}
