#!/usr/bin/env bash
# npm run test:postgres: the PostgreSQL side of npm test, alone — every twin
# (*.pg.test.ts: three lines that set STRATO_TEST_DATABASE=postgres and import
# their suite) and the suites that run only on PostgreSQL (test/functional/store/),
# on one cluster for the run (test/helpers/postgres-run.ts: each controller's
# database a copy of a migrated template). npm test runs exactly these too, next
# to the same suites on SQLite.
#
# Every store-touching functional suite — test/functional/{compute,identity,
# image,network,volume}/*.test.ts and lifecycle.test.ts — has a twin, but one:
# image/grpc-limits.test.ts, the gRPC transport's limits against unauthenticated
# callers (oversized metadata, idle connections, a stalled upload's idle timeout,
# back-pressure under 50 parallel uploads, undecodable requests) with its
# controller as a process of its own; its one store write (a stalled upload's
# image back to queued) is the conditional update images.pg and upload-crash.pg
# run, and a twin would add ~50 s and ~27 CPU-s for nothing store-specific.
# test/functional/store/*.test.ts need none: they are on PostgreSQL already.
set -uo pipefail
cd "$(dirname "$0")/../.."
mapfile -t files < <(find test -name '*.pg.test.ts' | sort)
files+=(test/functional/store/*.test.ts)
exec node_modules/.bin/tap "$@" "${files[@]}"
