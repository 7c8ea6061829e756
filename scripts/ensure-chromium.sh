#!/usr/bin/env bash
# Browser tests drive Debian's chromium (never a downloaded browser): install it when missing.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian chromium for the browser tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "WARNING: /usr/bin/chromium is missing and cannot be installed here (need root and apt-get);" >&2
  echo "         browser tests will be skipped. Install it with: sudo apt-get install chromium" >&2
fi
