#!/bin/sh
# Fetch the Socket.IO browser client the demo page loads (vendor/socket.io.min.js),
# at the version pinned in package-lock.json.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

if ! command -v npm >/dev/null 2>&1; then
    echo "setup.sh: npm is required" >&2
    exit 1
fi

npm ci --silent --no-audit --no-fund
mkdir -p vendor
cp node_modules/socket.io-client/dist/socket.io.min.js vendor/socket.io.min.js
echo "demo/vendor/socket.io.min.js ready" >&2
