#!/bin/sh
# Installs what buildsys needs on a Debian 12 host: the host tools (apt) and a
# virtualenv with buildsys and its test dependencies in .venv.  Idempotent.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="bubblewrap gcc g++ make bc flex bison libelf-dev libssl-dev perl xz-utils bzip2 zstd lz4 patch git
          libncurses-dev python3 python3-venv python3-pip qemu-system-x86 qemu-system-arm ovmf gcc-aarch64-linux-gnu libc6-dev-arm64-cross
          mtools dosfstools squashfs-tools gdisk fdisk device-tree-compiler graphviz
          gpgv debian-archive-keyring debootstrap util-linux socat nginx
          minisign busybox sbsigntool cryptsetup-bin"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
    # nginx is here for scripts/cache-server.py (a throw-away server of our
    # own); Debian starts its default site on port 80 at install: stop that,
    # but only when this script installed it.
    case " $missing " in
        *" nginx "*) $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true ;;
    esac
fi

if [ ! -x .venv/bin/buildsys ] || [ pyproject.toml -nt .venv/.installed ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    touch .venv/.installed
fi
