#!/usr/bin/env bash
# Install Debian's chromium for the console's browser tests when it is missing (CI runs
# as root). Playwright drives this binary; no browser is ever downloaded by Playwright.
set -u
if [ -x /usr/bin/chromium ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1)"; exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium: missing; run as root: apt-get install -y chromium" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null \
  || { echo "chromium: apt-get install failed" >&2; exit 1; }
echo "chromium: installed $(/usr/bin/chromium --version 2>/dev/null | head -1)"
