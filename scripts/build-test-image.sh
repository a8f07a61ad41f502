#!/bin/sh
# Builds the tiny image the swarm-runtime tests and benches run: a busybox rootfs
# imported with `docker import` (no registry needed). Idempotent: does nothing when
# the image already exists.
#
#   scripts/build-test-image.sh [IMAGE]      (default swarm-test/busybox:1)
#
# Needs: a Docker Engine and Debian's `busybox-static` package (/bin/busybox).
set -eu
IMAGE="${1:-swarm-test/busybox:1}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi

BUSYBOX="${BUSYBOX:-/bin/busybox}"
if [ ! -x "$BUSYBOX" ]; then
    echo "build-test-image: $BUSYBOX not found (apt-get install -y busybox-static)" >&2
    exit 1
fi

ROOT="$(mktemp -d)"
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/bin" "$ROOT/tmp" "$ROOT/etc" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in sh sleep echo cat true false ls env id pwd kill wc head tail nc httpd hostname; do
    ln -s busybox "$ROOT/bin/$applet"
done
echo "root:x:0:0:root:/:/bin/sh" >"$ROOT/etc/passwd"
echo "nobody:x:65534:65534:nobody:/:/bin/sh" >>"$ROOT/etc/passwd"
echo "root:x:0:" >"$ROOT/etc/group"
echo "nogroup:x:65534:" >>"$ROOT/etc/group"
chmod 1777 "$ROOT/tmp"
tar -C "$ROOT" -c . | docker import -c 'ENV PATH=/bin' - "$IMAGE" >/dev/null
echo "build-test-image: built $IMAGE"
