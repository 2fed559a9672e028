#!/usr/bin/env bash
# npm start: set up what is missing, then run the stack in the foreground.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash cli/stack/setup.sh
exec node dist/cli/stack/run.js "$@"
