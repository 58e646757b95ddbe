#!/bin/sh
# Installs the Debian 12 packages Parley needs to build, run and test.
# Fast and silent when everything is present (one dpkg-query); otherwise
# runs apt-get update + install non-interactively, as root or through sudo.
set -eu

PACKAGES="
build-essential
pkg-config
clang
libzmq3-dev
libev-dev
libyajl-dev
libpq-dev
libssl-dev
libexpat1-dev
libsqlite3-dev
libidn-dev
libcmocka-dev
postgresql
python3
python3-pytest
python3-slixmpp
python3-zmq
openssl
systemd
sqlite3
"

missing=""
for p in $PACKAGES; do
    # "install ok installed" is the only state in which the package is usable.
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
    "install ok installed") ;;
    *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-deps: not root and sudo is not available; install as root:$missing" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086 # word splitting of the package list is intended
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
