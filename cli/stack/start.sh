#!/usr/bin/env bash
# npm start: set up what is missing, then run the stack in the foreground.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash cli/stack/setup.sh
# --single-threaded-gc: the controller's garbage collections run on its own
# thread instead of beside it on V8's helper threads. On a small host, where
# the cores are shared with the agent, QEMU and nats-server, that is less CPU
# in all (an image upload spent ~0.9 CPU-s per GiB in GC helpers) for pauses
# of a few ms on a heap of tens of MB. The agent, a child, inherits it.
exec node --single-threaded-gc dist/cli/stack/run.js "$@"
