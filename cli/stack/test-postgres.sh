#!/usr/bin/env bash
# npm run test:postgres: the store-touching functional suites again with their
# controllers on PostgreSQL (STRATO_TEST_DATABASE=postgres: one private cluster
# for the run, a fresh database per controller). npm test runs a quick subset of
# them this way (the *.pg.test.ts twins); this runs them all (~8 min on 2 cores).
set -uo pipefail
cd "$(dirname "$0")/../.."
files=()
for f in test/functional/{compute,identity,image,network,volume,store}/*.test.ts test/functional/lifecycle.test.ts; do
  case "$f" in *.pg.test.ts) ;; *) files+=("$f") ;; esac
done
STRATO_TEST_DATABASE=postgres exec node_modules/.bin/tap --jobs 1 "$@" "${files[@]}"
