#!/usr/bin/env bash
# Run a command inside a board built by .ci/build-board.sh, the way a booted board would see
# itself: its own /proc (a private PID namespace: the command is PID 1 there and everything
# it starts dies with it), /sys, a small /dev (null, zero, full, random, urandom, tty, shm,
# pts, fd links), all in a private mount namespace, so nothing stays mounted on the host
# after it exits.
#
#   .ci/board-chroot.sh ROOT COMMAND [ARG...]
#
# Needs root. For an arm64 board on an x86-64 host, binfmt_misc must have qemu-aarch64
# registered with the F (fix binary) flag (Debian's qemu-user-static does that), so the
# emulator works inside the chroot.
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 ROOT COMMAND [ARG...]" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "board-chroot.sh: run as root (chroot and mounts need it)" >&2; exit 1; }
ROOT=$(realpath "$1"); shift
[[ -x $ROOT/usr/bin/python3 ]] || { echo "board-chroot.sh: $ROOT is not a board (no usr/bin/python3); build it with .ci/build-board.sh" >&2; exit 1; }

# shellcheck disable=SC2016
exec unshare --mount --pid --fork --kill-child --propagation private -- bash -c '
  set -e
  root=$1; shift
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount -t tmpfs -o mode=0755,size=16m,nosuid odt-dev "$root/dev"
  for node in null zero full random urandom tty; do
    : >"$root/dev/$node"
    mount --bind "/dev/$node" "$root/dev/$node"
  done
  mkdir -p "$root/dev/shm" "$root/dev/pts"
  mount -t tmpfs -o mode=1777,nosuid,nodev odt-shm "$root/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 odt-pts "$root/dev/pts" 2>/dev/null \
    && ln -s pts/ptmx "$root/dev/ptmx" || true
  ln -s /proc/self/fd "$root/dev/fd"
  ln -s /proc/self/fd/0 "$root/dev/stdin"
  ln -s /proc/self/fd/1 "$root/dev/stdout"
  ln -s /proc/self/fd/2 "$root/dev/stderr"
  exec chroot "$root" "$@"
' board-chroot "$ROOT" "$@"
