#!/usr/bin/env bash
# npm run start:cluster: set up what is missing (as npm start does), then run PostgreSQL,
# a 3-node NATS cluster, two controllers and the local agent in the foreground (run-cluster.ts).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash cli/stack/setup.sh
# --single-threaded-gc: as npm start (start.sh says why); two controllers share this process.
exec node --single-threaded-gc dist/cli/stack/run-cluster.js "$@"
