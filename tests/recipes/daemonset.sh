#!/usr/bin/env bash
# The DaemonSet + consumer pod recipe (deploy/daemonset.yaml, deploy/consumer-pod.yaml), run with
# the kernel mechanisms a container runtime uses, inside a private mount namespace ("the node"):
# - the hostPath /run/secretfs is a shared bind mount on the node;
# - the daemon's container gets it with Bidirectional propagation (rshared) and mounts secretfs
#   on the subdirectory `fs` of the volume (the volume is a mount root, mode 0777 like an
#   emptyDir);
# - a consumer pod, started before the daemon, gets it with HostToContainer propagation (slave),
#   read-only, and reads as uid 1000;
# - a write in the daemon's container (a rotation) is seen by the consumer; the daemon restarts
#   and the consumer sees the mount come back.
# With `sidecar` as a 4th argument, the sidecar recipe (deploy/sidecar-pod.yaml): the volume is
# the pod's emptyDir and the app container starts only once secretfs answers (a native sidecar
# with a startup probe), binding the volume with the mount already in it. That is why secretfs
# mounts on a subdirectory: an app that binds the volume while the mount is on the volume itself
# holds that very mount and never sees a restarted one; a mount below what the app binds
# propagates out and back in.
# Usage (as root): unshare --mount --propagation private tests/recipes/daemonset.sh SECRETFS STORE WORKDIR [sidecar]
set -euo pipefail
secretfs=$1 store=$2 work=$3 recipe=${4:-daemonset}
node_volume=$work/node/run/secretfs daemon_volume=$work/daemon/run/secretfs consumer_volume=$work/consumer/secrets
mkdir -p "$node_volume" "$daemon_volume" "$consumer_volume"
chmod 0777 "$node_volume"

# hostPath on the node: a shared mount.
mount --bind "$node_volume" "$node_volume"
mount --make-shared "$node_volume"

# The consumer: its own mount namespace, the volume read-only with HostToContainer (slave).
start_consumer() {
    unshare --mount --propagation slave sh -c \
        "mount --rbind '$node_volume' '$consumer_volume' && mount -o remount,bind,ro '$consumer_volume' && mount --make-rslave '$consumer_volume' && exec sleep 300" &
    consumer=$!
    sleep 0.2
}
consumer=""
[ "$recipe" = daemonset ] && start_consumer
in_consumer() { nsenter -t "$consumer" -m -- timeout 10 setpriv --reuid 1000 --regid 1000 --clear-groups "$@"; }

# The daemon's container: its own mount namespace, the volume with Bidirectional (rshared).
unshare --mount --propagation unchanged sh -c \
    "mount --bind '$node_volume' '$daemon_volume' && mount --make-shared '$daemon_volume' && exec sleep 300" &
daemon_ns=$!
sleep 0.2
mount_at=$daemon_volume/fs seen_at=$consumer_volume/fs
start_daemon() {
    nsenter -t "$daemon_ns" -m -- sh -c "mkdir -p -m 0755 '$mount_at'"
    nsenter -t "$daemon_ns" -m -- timeout 20 "$secretfs" mount --local "$store" --allow-other \
        --file-mode 0644 --dir-mode 0755 "$mount_at"
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
    nsenter -t "$daemon_ns" -m -- timeout 20 "$secretfs" unmount "$mount_at" 2>/dev/null || true
    kill $consumer "$daemon_ns" 2>/dev/null || true
}
trap cleanup EXIT

start_daemon
[ "$recipe" = sidecar ] && start_consumer
echo "mounted: $(nsenter -t "$consumer" -m -- findmnt -no FSTYPE "$seen_at" | tail -1)"
wait_for "S3cr3Tp4Ssw0Rd!^" "$seen_at/ps/prod/db/root"
if in_consumer sh -c "printf x > '$seen_at/ps/prod/db/root'" 2>/dev/null; then
    echo "the consumer could write through its read-only volume" >&2; exit 1
fi
echo "consumer (uid 1000) reads the value"

nsenter -t "$daemon_ns" -m -- timeout 10 sh -c "printf rotated-1 | cat > '$mount_at/ps/prod/db/root'"
wait_for "rotated-1" "$seen_at/ps/prod/db/root"
echo "consumer sees the rotation"

nsenter -t "$daemon_ns" -m -- timeout 20 "$secretfs" unmount "$mount_at"
start_daemon
wait_for "rotated-1" "$seen_at/ps/prod/db/root"
echo "consumer sees the mount come back after a restart"
