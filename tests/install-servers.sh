#!/usr/bin/env bash
# Installs the servers the tests run against, as root on Debian 12: Dovecot, GNU Mailutils imap4d, PostgreSQL and
# a headless Chromium with apt, and Cyrus IMAP and Courier-IMAP unpacked into a private root beside them. Debian's
# cyrus-imapd and courier-imap each conflict with dovecot-imapd (all three provide imap-server), so apt would remove
# Dovecot to install either: only their dependencies come from apt, and the two server packages are downloaded and
# unpacked with dpkg -x into ${MAILTRIAGE_TEST_SERVERS:-/opt/mailtriage-test-servers}/{cyrus,courier}, where
# tests/cyrus.py and tests/courier.py look for them. Safe to run again: a second run is quick and changes nothing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

ROOT="${MAILTRIAGE_TEST_SERVERS:-/opt/mailtriage-test-servers}"
PACKAGES=(
    dovecot-imapd openssl mailutils-imap4d
    # Cyrus IMAP 3.6: master, ctl_cyrusdb and the SASL password database come with cyrus-common and sasl2-bin.
    cyrus-common sasl2-bin libsasl2-modules libsasl2-modules-db
    # Courier-IMAP 5: couriertcpd, authdaemond, userdb and maildirmake; gamin makes IDLE immediate.
    courier-base courier-authdaemon courier-authlib-userdb libcourier-unicode4 gamin
    # unshare, for the private mount and PID namespaces Courier runs in.
    util-linux
    # initdb and pg_ctl for tests/postgres.py's own cluster (not the main one on 5432); psycopg[binary] has libpq.
    postgresql
    # Chromium and its ChromeDriver for tests/browser.py (the web console's tests), which names both by path so that
    # Selenium never downloads either.
    chromium chromium-driver
)

if [ "$(id -u)" -ne 0 ]; then
    echo "install-servers.sh: run as root (it installs Debian packages)" >&2
    exit 1
fi

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f '${db:Status-Status}' "$package" 2>/dev/null | grep -qx installed; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
fi

# Each unpacked server must match its installed dependency (cyrus-imapd = cyrus-common, courier-imap needs
# courier-base =): .installed-for in its root records the dependency's version it was unpacked for, so a second
# run downloads nothing while they agree.
unpack() {
    local package=$1 dependency=$2 target=$3
    local have
    have=$(dpkg-query -W -f '${Version}' "$dependency")
    if [ -f "$target/.installed-for" ] && [ "$(cat "$target/.installed-for")" = "$dependency $have" ]; then
        return
    fi
    local work deb wanted
    work=$(mktemp -d)
    chown _apt "$work" 2>/dev/null || true # apt-get download writes here as the unprivileged _apt user
    (cd "$work" && apt-get download -q "$package") || (apt-get update -q && cd "$work" && apt-get download -q "$package")
    deb=$(echo "$work"/*.deb)
    # The version of the dependency this package wants; when it is not the installed one, install that one, as
    # apt would when installing the package itself.
    wanted=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -n "s/^ *$dependency (= \(.*\))\$/\1/p")
    if [ -n "$wanted" ] && [ "$wanted" != "$have" ]; then
        apt-get install -y -q --no-install-recommends "$dependency=$wanted"
        have=$wanted
    fi
    rm -rf "$target.new"
    mkdir -p "$target.new"
    dpkg -x "$deb" "$target.new"
    echo "$dependency $have" >"$target.new/.installed-for"
    local unpacked
    unpacked="$package $(dpkg-deb -f "$deb" Version)"
    rm -rf "$target" "$work"
    mv "$target.new" "$target"
    echo "install-servers.sh: $unpacked unpacked into $target"
}

mkdir -p "$ROOT"
unpack cyrus-imapd cyrus-common "$ROOT/cyrus"
unpack courier-imap courier-base "$ROOT/courier"
