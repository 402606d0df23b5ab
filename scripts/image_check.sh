#!/usr/bin/env bash
# Build deploy/Dockerfile without a Docker engine or a registry, then run `settlekeeper doctor`, the listener
# and a worker in the image: UID 10001, a read-only root filesystem, against the sandbox of this checkout.
#
#   sudo scripts/image_check.sh        (root: buildah with the vfs driver, chroot, bind mounts)
#
# Needs Debian's buildah and debootstrap, a Redis on 127.0.0.1:6379 (db 7 is used and flushed) and the
# network to Debian's mirror and PyPI. No registry is needed: the base image is made with debootstrap
# (bookworm's python3 is 3.11, as python:3.11-slim-bookworm's) and passed as PYTHON_IMAGE. The host's CA
# bundle is mounted into the build's RUN steps only (pip reaches PyPI through it here); it is not in the image.
# Not part of the test command: it downloads about 100 MB and takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${IMAGE_CHECK_DIR:-/tmp/settlekeeper-image}
B=(buildah --storage-driver vfs)
mkdir -p "$work"

if ! "${B[@]}" images --quiet localhost/debian-python:3.11-bookworm | grep -q .; then
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log"
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  base=$("${B[@]}" from scratch)
  cp -a "$work/rootfs/." "$("${B[@]}" mount "$base")/"
  "${B[@]}" umount "$base"
  "${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$base"
  "${B[@]}" commit -q "$base" localhost/debian-python:3.11-bookworm >/dev/null
fi

rm -rf "$work/context" && mkdir -p "$work/context"
git archive HEAD | tar -x -C "$work/context"
(cd "$work/context" && "${B[@]}" bud --isolation chroot --network host \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  --build-arg PYTHON_IMAGE=localhost/debian-python:3.11-bookworm \
  -f deploy/Dockerfile -t localhost/settlekeeper:check . >"$work/build.log")
"${B[@]}" images localhost/settlekeeper:check
echo "user, entrypoint, cmd: $("${B[@]}" inspect --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Cmd}}' localhost/settlekeeper:check)"

container=$("${B[@]}" from localhost/settlekeeper:check)
root="$work/ro"
mkdir -p "$root"
mount --bind "$("${B[@]}" mount "$container")" "$root"
mount -o remount,bind,ro "$root"
mount --bind /proc "$root/proc"
mount --bind /dev "$root/dev"
cleanup() {
  pkill -f "settlekeeper sandbox --port 18999" || true
  umount "$root/dev" "$root/proc" "$root" || true
  "${B[@]}" rm "$container" >/dev/null || true
}
trap cleanup EXIT

.venv/bin/settlekeeper sandbox --port 18999 >"$work/sandbox.log" 2>&1 &
sleep 3
redis-cli -n 7 flushdb >/dev/null
in_image() {
  /usr/sbin/chroot --userspec=10001:10001 "$root" /usr/bin/env -i PATH=/opt/settlekeeper/bin:/usr/bin:/bin \
    SETTLEKEEPER_BROKER_URL=http://127.0.0.1:18999 SETTLEKEEPER_REDIS_URL=redis://127.0.0.1:6379/7 \
    SETTLEKEEPER_LOG_FORMAT=json "$@"
}
if touch "$root/written" 2>/dev/null; then echo "the root filesystem is writable" >&2; exit 1; fi
in_image /usr/bin/id
in_image settlekeeper doctor
in_image env SETTLEKEEPER_HTTP_PORT=19108 settlekeeper listen >"$work/listener.log" 2>&1 &
sleep 4
curl -s -u sandbox-key:sandbox-secret -H 'Content-Type: application/json' http://127.0.0.1:18999/v1/instant_funding \
  -d '{"account_no":"8100000001","source_account_no":"7536050SI","amount":"42.00"}' >/dev/null
sleep 4
echo "listener /readyz: $(curl -s localhost:19108/readyz)"
in_image settlekeeper work --name image-check --metrics-port 19109 >"$work/worker.log" 2>&1 &
sleep 8
pkill -TERM -f "settlekeeper listen" || true
pkill -TERM -f "settlekeeper work --name image-check" || true
sleep 4
for log in listener worker; do
  echo "$log: $(grep -o '"event": *"[a-z_]*"' "$work/$log.log" | sort | uniq -c | sort -rn | tr -s ' ' | tr '\n' ';')"
  if grep -q Traceback "$work/$log.log"; then echo "$log: a traceback (see $work/$log.log)" >&2; exit 1; fi
done
grep -q '"event": *"transfer_recorded"' "$work/listener.log"
echo "image check: ok"
