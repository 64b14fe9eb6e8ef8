#!/usr/bin/env bash
# Builds the GraphiQL playground from its npm packages into playground/dist,
# which is committed and embedded in the binary (go:embed), so the server
# needs neither Node.js nor the network at run time.
#
#   scripts/build-playground.sh          npm ci + bundle into playground/dist
#   scripts/build-playground.sh --check  rebuild into a temporary directory and
#                                        fail if it differs from the committed
#                                        playground/dist (for CI)
#
# Needs Node.js 20+ and npm with access to the npm registry (or a warm cache).
# To upgrade a package: edit playground/web/package.json (exact versions),
# run `npm install` in playground/web to update package-lock.json, then this
# script, and commit package.json, package-lock.json and playground/dist.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
web="$root/playground/web"
dist="$root/playground/dist"

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

command -v node >/dev/null || { echo "build-playground: node is not installed (Node.js 20+ is needed)" >&2; exit 1; }
command -v npm >/dev/null || { echo "build-playground: npm is not installed" >&2; exit 1; }
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "build-playground: Node.js $(node --version) is too old; 20 or newer is needed" >&2
  exit 1
fi

cd "$web"
# Exactly the versions in package-lock.json; no audit/fund chatter. esbuild's
# native binary comes from its optional @esbuild/<platform> package, so its
# install script is not needed.
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

if $check; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  node build.mjs "$tmp/dist"
  if ! diff -r "$dist" "$tmp/dist" >/dev/null; then
    diff -rq "$dist" "$tmp/dist" >&2 || true
    echo "build-playground: playground/dist is not what the sources build; run scripts/build-playground.sh and commit playground/dist" >&2
    exit 1
  fi
  echo "build-playground: playground/dist is up to date"
else
  node build.mjs "$dist"
fi
