#!/usr/bin/env bash
# The playground's browser test drives Debian's Chromium. Install it when it
# is missing (as root or with passwordless sudo); say so and fail otherwise.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  echo "chromium: $(chromium --version 2>/dev/null | head -1 || echo present)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "chromium is missing and this user cannot install packages (apt-get install chromium)" >&2; exit 1
  fi
fi
echo "chromium: installing from Debian's packages…"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq </dev/null
$SUDO apt-get install -y -qq chromium </dev/null >/dev/null
chromium --version
