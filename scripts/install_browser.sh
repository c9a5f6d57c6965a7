#!/usr/bin/env bash
# Headless Chromium for the end-to-end tests (tests/e2e), from Debian's `chromium` package.
# Idempotent: does nothing when the browser is already there. Playwright's own browser download is
# never used (`playwright install` is not run): the tests launch /usr/bin/chromium directly.
# Needs root (CI runs as root, without a terminal) the first time only.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: $CHROMIUM is missing and apt-get is not available;" \
         "install Chromium yourself (the e2e tests need it)" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install_browser: $CHROMIUM is missing; run as root: apt-get install -y chromium" >&2
        exit 1
    fi
fi

echo "install_browser: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq </dev/null
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium </dev/null

if [ ! -x "$CHROMIUM" ]; then
    echo "install_browser: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
"$CHROMIUM" --version >&2 || true
