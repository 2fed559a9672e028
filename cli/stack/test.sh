#!/usr/bin/env bash
# npm test: set up what is missing, type-check (the build), run every tap test,
# and end with one line CI reads: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
if ! bash cli/stack/setup.sh; then
  echo "setup failed"
  echo "0 passed, 1 failed"
  exit 1
fi
log=$(mktemp)
node_modules/.bin/tap "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -n 1)
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary")
skip=$(sed -nE 's/.*skip: ([0-9]+).*/\1/p' <<<"$summary")
pass=${pass:-0}; fail=${fail:-0}
if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
# CI keeps only the end of the output: repeat each failure (its line and
# diagnostics) here, so the last screen says what failed and why.
if grep -q 'not ok' "$log"; then
  echo "# failures:"
  awk '/not ok/ { n = 30 } n > 0 { print; n-- }' "$log" | head -n 300
fi
rm -f "$log"
if [ -n "${skip:-}" ]; then echo "$pass passed, $fail failed, $skip skipped"; else echo "$pass passed, $fail failed"; fi
exit "$rc"
