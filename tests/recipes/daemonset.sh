#!/usr/bin/env bash
# The DaemonSet + consumer pod recipe (deploy/daemonset.yaml, deploy/consumer-pod.yaml), run with
# the kernel mechanisms a container runtime uses, inside a private mount namespace ("the node"):
# - the hostPath /run/secretfs is a shared bind mount on the node;
# - the daemon's container gets it with Bidirectional propagation (rshared) and mounts secretfs
#   on the volume itself (a mount root, mode 0777 like an emptyDir);
# - a consumer pod, started before the daemon, gets it with HostToContainer propagation (slave),
#   read-only, and reads as uid 1000;
# - a write in the daemon's container (a rotation) is seen by the consumer; the daemon restarts
#   and the consumer sees the mount come back.
# Usage (as root): unshare --mount --propagation private tests/recipes/daemonset.sh SECRETFS STORE WORKDIR
set -euo pipefail
secretfs=$1 store=$2 work=$3
node_volume=$work/node/run/secretfs daemon_volume=$work/daemon/run/secretfs consumer_volume=$work/consumer/secrets
mkdir -p "$node_volume" "$daemon_volume" "$consumer_volume"
chmod 0777 "$node_volume"

# hostPath on the node: a shared mount.
mount --bind "$node_volume" "$node_volume"
mount --make-shared "$node_volume"

# The consumer pod: its own mount namespace, the volume read-only with HostToContainer (slave).
unshare --mount --propagation slave sh -c \
    "mount --bind '$node_volume' '$consumer_volume' && mount -o remount,bind,ro '$consumer_volume' && mount --make-slave '$consumer_volume' && exec sleep 300" &
consumer=$!
in_consumer() { nsenter -t "$consumer" -m -- timeout 10 setpriv --reuid 1000 --regid 1000 --clear-groups "$@"; }

# The daemon's container: its own mount namespace, the volume with Bidirectional (rshared).
unshare --mount --propagation unchanged sh -c \
    "mount --bind '$node_volume' '$daemon_volume' && mount --make-shared '$daemon_volume' && exec sleep 300" &
daemon_ns=$!
sleep 0.2
start_daemon() {
    nsenter -t "$daemon_ns" -m -- timeout 20 "$secretfs" mount --local "$store" --allow-other \
        --file-mode 0644 --dir-mode 0755 "$daemon_volume"
}
wait_for() { # wait_for EXPECTED FILE: the consumer reads EXPECTED from FILE within 10 s
    for _ in $(seq 100); do
        [ "$(in_consumer cat "$2" 2>/dev/null)" = "$1" ] && return 0
        sleep 0.1
    done
    echo "consumer never read '$1' from $2 (got: $(in_consumer cat "$2" 2>&1))" >&2
    return 1
}
cleanup() {
    nsenter -t "$daemon_ns" -m -- timeout 20 "$secretfs" unmount "$daemon_volume" 2>/dev/null || true
    kill "$consumer" "$daemon_ns" 2>/dev/null || true
}
trap cleanup EXIT

start_daemon
echo "mounted: $(nsenter -t "$consumer" -m -- findmnt -no FSTYPE "$consumer_volume" | tail -1)"
wait_for "S3cr3Tp4Ssw0Rd!^" "$consumer_volume/ps/prod/db/root"
if in_consumer sh -c "printf x > '$consumer_volume/ps/prod/db/root'" 2>/dev/null; then
    echo "the consumer could write through its read-only volume" >&2; exit 1
fi
echo "consumer (uid 1000) reads the value"

nsenter -t "$daemon_ns" -m -- timeout 10 sh -c "printf rotated-1 | cat > '$daemon_volume/ps/prod/db/root'"
wait_for "rotated-1" "$consumer_volume/ps/prod/db/root"
echo "consumer sees the rotation"

nsenter -t "$daemon_ns" -m -- timeout 20 "$secretfs" unmount "$daemon_volume"
start_daemon
wait_for "rotated-1" "$consumer_volume/ps/prod/db/root"
echo "consumer sees the mount come back after a restart"
