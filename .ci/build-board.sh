#!/usr/bin/env bash
# Build a "foreign board": a Debian trixie userland made only from Debian packages, with its
# own Python 3.13, Debian's python3-torch (2.6) and python3-numpy, and Dropbear (no SFTP).
#
#   .ci/build-board.sh ARCH DEST        ARCH: amd64 | arm64
#
# The packages are *extracted* (dpkg-deb -x), never configured: configuring them under
# qemu-user emulation takes more than 25 minutes, extracting takes seconds. Extraction skips
# the maintainer scripts, so what they would have done is done here by hand: the merged-/usr
# links, /etc/passwd and /etc/group (base-passwd), /etc/shells (debianutils), the
# update-alternatives links (libblas.so.3, liblapack.so.3, libopenblas.so.0, awk, which),
# the dynamic linker's cache (ldconfig) and the byte-compiled Python modules (py3compile).
# Nothing is pip-installed. Devices (/dev/null, /dev/urandom), /proc and /sys are not part of
# the image: whoever chroots into it bind-mounts them (tests/integration/dropbear.py does).
#
# Downloads go through a private apt configuration (its own sources, lists, archive cache
# and an empty dpkg status), so the host's apt state is untouched. They are cached under
# $BOARD_CACHE (default /var/cache/odt-board), so a second build downloads nothing. The
# script is idempotent: DEST/.odt-board-stamp records the exact package versions and this
# script's hash; when they match, the board is left as it is.
#
# Environment: BOARD_CACHE (download cache), BOARD_MIRROR (default: the host's Debian mirror
# or http://deb.debian.org/debian), BOARD_REFRESH=1 (re-read the package lists even when the
# cached ones are less than a day old), BOARD_NATIVE_ROOT (arm64 on x86-64: a board of this
# machine's architecture that byte-compiles the foreign one; default DEST/../amd64). Needs root (ownership, chroot) and, for arm64's
# ldconfig and byte-compiling, qemu-user-static with binfmt_misc, or it says what it skipped.
set -euo pipefail

usage() { echo "usage: $0 amd64|arm64 DEST" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
ARCH=$1
DEST=$2
case $ARCH in
  amd64) TRIPLET=x86_64-linux-gnu ;;
  arm64) TRIPLET=aarch64-linux-gnu ;;
  *) echo "build-board.sh: unknown ARCH '$ARCH'; use amd64 or arm64" >&2; exit 2 ;;
esac
if [[ $(id -u) -ne 0 ]]; then
  echo "build-board.sh: run as root (extracted files keep their owners; the checks chroot)" >&2
  exit 1
fi
for tool in apt-get dpkg-deb chroot sha256sum; do
  command -v "$tool" >/dev/null || { echo "build-board.sh: '$tool' is missing (Debian: apt-get install apt dpkg coreutils)" >&2; exit 1; }
done

SUITE=trixie
HERE=$(cd "$(dirname "$0")" && pwd)
# What the board is for; the rest is Debian's Priority: required set (like debootstrap's
# minbase, without apt). OpenBLAS as the BLAS (what a tuned Debian install selects through
# update-alternatives; without it apt picks the slow reference libblas3); procps gives
# ps/kill/pkill, which the harness uses to reap agents.
WANTED=(python3 python3-torch python3-numpy libopenblas0-pthread dropbear-bin procps)
SCRIPT_HASH=$(sha256sum "$0" | cut -c1-16)
CACHE=${BOARD_CACHE:-/var/cache/odt-board}/$ARCH
DEST=$(realpath -m "$DEST")
STAMP=$DEST/.odt-board-stamp
t0=$(date +%s)
say() { echo "build-board.sh [$ARCH, $(( $(date +%s) - t0 )) s]: $*"; }

mirror=${BOARD_MIRROR:-}
if [[ -z $mirror && -f /etc/apt/sources.list.d/debian.sources ]]; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
  mirror=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f $keyring ]] || { echo "build-board.sh: $keyring is missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

# -- a private apt: own sources, lists, archives and an empty dpkg status ------------------
mkdir -p "$CACHE"/{lists/partial,archives/partial,etc/apt.conf.d,etc/preferences.d,etc/sources.list.d,log}
: >"$CACHE/status.empty"
cat >"$CACHE/etc/sources.list" <<EOF
deb [signed-by=$keyring] $mirror $SUITE main
EOF
cat >"$CACHE/apt.conf" <<EOF
APT::Architecture "$ARCH";
APT::Architectures { "$ARCH"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::Retries "3";
Dir::State "$CACHE";
Dir::State::Lists "$CACHE/lists";
Dir::State::status "$CACHE/status.empty";
Dir::Cache "$CACHE";
Dir::Cache::Archives "$CACHE/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Dir::Etc "$CACHE/etc";
Dir::Etc::SourceList "$CACHE/etc/sources.list";
Dir::Etc::SourceParts "$CACHE/etc/sources.list.d";
Dir::Etc::Parts "$CACHE/etc/apt.conf.d";
Dir::Etc::PreferencesParts "$CACHE/etc/preferences.d";
Dir::Log "$CACHE/log";
Debug::NoLocking "true";
EOF
export APT_CONFIG=$CACHE/apt.conf
apt_() { apt-get -q -o Dir::Etc::Trusted=/dev/null "$@"; }

lists_age_s=$(( $(date +%s) - $(stat -c %Y "$CACHE/lists.stamp" 2>/dev/null || echo 0) ))
if [[ ${BOARD_REFRESH:-0} == 1 || $lists_age_s -gt 86400 ]]; then
  say "reading $SUITE's package lists from $mirror"
  apt_ update >"$CACHE/log/update.log" 2>&1 || { tail -n 20 "$CACHE/log/update.log" >&2; exit 1; }
  touch "$CACHE/lists.stamp"
else
  say "package lists are $(( lists_age_s / 60 )) min old: reusing them (BOARD_REFRESH=1 re-reads)"
fi

# -- which packages: Priority: required + WANTED, with their dependencies ------------------
# The plan is computed again only when the lists or this script changed since the last one.
plan_key="script=$SCRIPT_HASH wanted=${WANTED[*]} lists=$(stat -c %Y "$CACHE/lists.stamp")"
if [[ ! -f $CACHE/plan.txt || "$(cat "$CACHE/plan.key" 2>/dev/null)" != "$plan_key" ]]; then
  mapfile -t required < <(apt-cache dumpavail | awk '
    /^Package: / {p=$2} /^Priority: required/ {print p}' | sort -u)
  apt_ -s install "${required[@]}" "${WANTED[@]}" >"$CACHE/log/plan.log" 2>&1 \
    || { tail -n 30 "$CACHE/log/plan.log" >&2; exit 1; }
  # "Inst NAME (VERSION SUITE [ARCH])"
  awk '$1 == "Inst" {v=$3; sub(/^\(/, "", v); print $2 "=" v}' "$CACHE/log/plan.log" | sort >"$CACHE/plan.txt"
  echo "$plan_key" >"$CACHE/plan.key"
fi
npkg=$(wc -l <"$CACHE/plan.txt")
[[ $npkg -gt 50 ]] || { echo "build-board.sh: apt planned only $npkg packages; see $CACHE/log/plan.log" >&2; exit 1; }
want_stamp=$( { echo "script=$SCRIPT_HASH arch=$ARCH suite=$SUITE"; cat "$CACHE/plan.txt"; } )

if [[ -f $STAMP && "$(cat "$STAMP")" == "$want_stamp" ]]; then
  say "$DEST is already this board ($npkg packages): nothing to do"
  exit 0
fi
if [[ -e $DEST && ! -f $STAMP ]] && [[ -n $(ls -A "$DEST" 2>/dev/null) ]]; then
  echo "build-board.sh: $DEST exists, is not empty and is not a board this script built; remove it or pick another DEST" >&2
  exit 1
fi

deb_of() {  # the cached .deb of NAME=VERSION, or nothing
  local name=${1%%=*} version=${1#*=}
  compgen -G "$CACHE/archives/${name}_${version//:/%3a}_*.deb" | head -n 1 || true
}
mapfile -t pinned <"$CACHE/plan.txt"  # NAME=VERSION: exactly the planned versions
uncached=0
for pkg in "${pinned[@]}"; do [[ -n $(deb_of "$pkg") ]] || uncached=$((uncached + 1)); done
if [[ $uncached -gt 0 ]]; then
  say "downloading $uncached of $npkg packages (the others are cached)"
  apt_ install -y --download-only "${pinned[@]}" >"$CACHE/log/download.log" 2>&1 \
    || { tail -n 30 "$CACHE/log/download.log" >&2; exit 1; }
else
  say "all $npkg packages are cached"
fi

# -- extract into a fresh tree, then swap it into place ------------------------------------
if mountpoint -q "$DEST/proc" 2>/dev/null || mountpoint -q "$DEST/sys" 2>/dev/null; then
  echo "build-board.sh: $DEST has /proc or /sys mounted (a chroot is running in it); stop it first" >&2
  exit 1
fi
NEW=$DEST.new
rm -rf "$NEW"
mkdir -p "$NEW/usr"/{bin,sbin,lib}
ln -s usr/bin "$NEW/bin"; ln -s usr/sbin "$NEW/sbin"; ln -s usr/lib "$NEW/lib"
if [[ $ARCH == amd64 ]]; then mkdir -p "$NEW/usr/lib64"; ln -s usr/lib64 "$NEW/lib64"; fi

say "extracting $npkg packages"
for pkg in "${pinned[@]}"; do
  deb=$(deb_of "$pkg")
  [[ -n $deb ]] || { echo "build-board.sh: $pkg was not downloaded (nothing in $CACHE/archives)" >&2; exit 1; }
  dpkg-deb -x "$deb" "$NEW"
done

# -- what the maintainer scripts would have done ---------------------------------------------
cp "$NEW/usr/share/base-passwd/passwd.master" "$NEW/etc/passwd"
cp "$NEW/usr/share/base-passwd/group.master" "$NEW/etc/group"
printf '/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n/bin/dash\n/usr/bin/dash\n' >"$NEW/etc/shells"
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$NEW/etc/nsswitch.conf"
printf 'odt-board-%s\n' "$ARCH" >"$NEW/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$NEW/etc/hosts"
chmod 1777 "$NEW/tmp"
mkdir -p "$NEW/proc" "$NEW/sys" "$NEW/dev" "$NEW/run" "$NEW/home" "$NEW/root"

# update-alternatives --install LINK NAME PATH: the links a configured system would have.
alt() {  # alt LINK TARGET...: link to the first TARGET that exists in the tree
  local link=$1; shift
  for target in "$@"; do
    if [[ -e $NEW$target ]]; then ln -sfn "$target" "$NEW$link"; return 0; fi
  done
  echo "build-board.sh: no target for $link among: $*" >&2
  return 1
}
lib=/usr/lib/$TRIPLET
alt "$lib/libblas.so.3" "$lib/openblas-pthread/libblas.so.3" "$lib/blas/libblas.so.3"
alt "$lib/liblapack.so.3" "$lib/openblas-pthread/liblapack.so.3" "$lib/lapack/liblapack.so.3"
alt "$lib/libopenblas.so.0" "$lib/openblas-pthread/libopenblas.so.0"
alt /usr/bin/awk /usr/bin/mawk
alt /usr/bin/which /usr/bin/which.debianutils || true

{ echo "script=$SCRIPT_HASH arch=$ARCH suite=$SUITE"; cat "$CACHE/plan.txt"; } >"$NEW/etc/odt-board-packages"

# Commands that run inside the tree: natively for amd64, under qemu-user (binfmt) for arm64.
in_tree() {
  if [[ $ARCH == arm64 && $(uname -m) != aarch64 ]] && [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    return 127
  fi
  "$HERE/board-chroot.sh" "$NEW" "$@"
}
if in_tree /sbin/ldconfig; then
  say "ldconfig: done"
else
  say "ldconfig could not run in the tree (arm64 needs qemu-user-static + binfmt); the loader falls back to its default paths"
fi
# py3compile's job: byte-compile the modules once, so that every agent start (as a user who
# cannot write __pycache__ under /usr) does not recompile torch. Byte-code does not depend on
# the architecture, only on the Python version, so a foreign board is compiled by a native
# board's Python of the same version when there is one (BOARD_NATIVE_ROOT, default the amd64
# board beside DEST): seconds, where compiling under emulation takes hours on a small host.
compile_dirs=(usr/lib/python3/dist-packages usr/lib/python3.13)
pyver() { awk -F= '$1 == "python3.13-minimal" {print $2}' "$1" 2>/dev/null; }
native=""
if [[ $ARCH == arm64 && $(uname -m) != aarch64 ]]; then
  native=${BOARD_NATIVE_ROOT:-$(dirname "$DEST")/amd64}
  if [[ ! -f $native/.odt-board-stamp || "$(pyver "$native/etc/odt-board-packages")" != "$(pyver "$CACHE/plan.txt")" ]]; then
    say "no native board with python3.13-minimal $(pyver "$CACHE/plan.txt") at $native (build it first for a fast byte-compile); compiling under emulation"
    native=""
  fi
fi
compile_log=$CACHE/log/compileall.log
if [[ -n $native ]]; then
  say "byte-compiling the Python modules with the native board's Python ($native)"
  # the tree appears at /run/odt-target inside the native board; -s/-p record its own paths
  mkdir -p "$native/run/odt-target"
  unshare --mount --propagation private -- bash -c 'mount --bind "$1" "$2/run/odt-target" && shift 2 && exec "$@"' \
    compile "$NEW" "$native" "$HERE/board-chroot.sh" "$native" /usr/bin/python3 -m compileall -q -j 0 -s /run/odt-target -p / \
    "${compile_dirs[@]/#//run/odt-target/}" >"$compile_log" 2>&1 && compiled=1 || compiled=0
else
  say "byte-compiling the Python modules"
  in_tree /usr/bin/python3 -m compileall -q -j 0 "${compile_dirs[@]/#//}" >"$compile_log" 2>&1 && compiled=1 || compiled=0
fi
if [[ $compiled == 1 ]]; then
  say "byte-compiled $(find "${compile_dirs[@]/#/$NEW/}" -name '*.pyc' | wc -l) modules"
else
  say "byte-compiling failed or could not run (see $compile_log); imports will compile in memory each time"
fi

# -- swap in and check -----------------------------------------------------------------------
rm -rf "$DEST.old"
[[ -e $DEST ]] && mv "$DEST" "$DEST.old"
mv "$NEW" "$DEST"
rm -rf "$DEST.old"
NEW=$DEST
if versions=$(in_tree /usr/bin/python3 -c 'import sys, numpy, torch; print(sys.version.split()[0], numpy.__version__, torch.__version__)'); then
  say "python, numpy, torch: $versions"
else
  say "could not import torch in the tree (for arm64 that needs qemu-user-static + binfmt)"
  [[ $ARCH == amd64 ]] && exit 1
fi
echo "$want_stamp" >"$STAMP"
say "board ready in $DEST ($(du -sh "$DEST" | cut -f1))"
