#!/bin/sh
# Builds a project inside another distribution's root filesystem (e.g. a
# Debian 13 root made by debootstrap) on this host, to show the pinned build
# environment makes the image independent of the host's release:
#
#   scripts/build-in-root.sh ROOTFS PROJECT DL_DIR WORK [USER] -- BUILDSYS-ARGS...
#
# ROOTFS needs python3 with buildsys's modules (python3-networkx, -yaml,
# -requests, -lz4, -tqdm, -filelock) and bubblewrap.  PROJECT is mounted at
# /project (buildsys runs from its buildsys/ dir), DL_DIR at /dl, WORK at
# /work (build dir, artifact cache and build environments go there).  With
# USER (a name or uid), buildsys runs as that user (WORK must be writable by
# it).  Needs root: it enters the root with `unshare --mount` + `pivot_root`,
# because bubblewrap refuses to make namespaces inside a plain chroot.
set -eu
[ $# -ge 4 ] || { echo "usage: $0 ROOTFS PROJECT DL_DIR WORK [USER] -- ARGS..." >&2; exit 2; }
ROOTFS=$(realpath "$1") PROJECT=$(realpath "$2") DL=$(realpath "$3") WORK=$(realpath "$4")
shift 4
RUN_AS=""
if [ $# -gt 0 ] && [ "$1" != "--" ]; then RUN_AS=$1; shift; fi
[ "${1:-}" = "--" ] && shift

exec unshare --mount --propagation private --fork -- sh -eu -c '
ROOTFS=$1 PROJECT=$2 DL=$3 WORK=$4 RUN_AS=$5
shift 5
mount --bind "$ROOTFS" "$ROOTFS"
for d in project dl work proc dev tmp old; do mkdir -p "$ROOTFS/$d"; done
mount --bind "$PROJECT" "$ROOTFS/project"
mount --bind "$DL" "$ROOTFS/dl"
mount --bind "$WORK" "$ROOTFS/work"
mount -t proc proc "$ROOTFS/proc"
mount --rbind /dev "$ROOTFS/dev"
mount -t tmpfs tmpfs "$ROOTFS/tmp"
cd "$ROOTFS"
pivot_root . old
umount -l /old
cd /project
set -- env -i PATH=/usr/bin:/bin HOME=/work/home LANG=C.UTF-8 PYTHONPATH=/project \
    BUILDSYS_BUILD_DIR=/work/build BUILDSYS_CACHE_DIR=/work/cache BUILDSYS_ENV_DIR=/work/buildenv \
    BUILDSYS_DL_DIR=/dl BUILDSYS_PARSE_CACHE=0 python3 -m buildsys --project /project "$@"
if [ -n "$RUN_AS" ]; then
    exec setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --clear-groups "$@"
fi
exec "$@"
' build-in-root "$ROOTFS" "$PROJECT" "$DL" "$WORK" "$RUN_AS" "$@"
