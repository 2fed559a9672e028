#!/usr/bin/env bash
# The TypeScript build into dist/ (tsconfig.build.json: what the bin entries, npm start and the
# tests' daemon processes run), incremental, and skipped outright when no input is newer than the
# last build this script finished: even with nothing to do, tsc reads and hashes the whole program
# (~6 CPU-s). The stamp is taken before tsc starts, so an edit made during a build counts; builds
# started at once (tests in parallel) take turns on a lock, and the later ones find nothing to do.
set -euo pipefail
cd "$(dirname "$0")/../.."
stamp=dist/.build-stamp
stale() {
  [ ! -f "$stamp" ] || [ -n "$(find controller agent cli native/*.ts proto tsconfig.json tsconfig.build.json package-lock.json -newer "$stamp" -print -quit)" ]
}
stale || exit 0
mkdir -p dist
exec 9>dist/.build-lock
flock 9
stale || exit 0
touch "$stamp.$$"
node_modules/.bin/tsc -p tsconfig.build.json || { rm -f "$stamp.$$"; exit 1; }
mv -f "$stamp.$$" "$stamp"
