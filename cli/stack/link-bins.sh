#!/usr/bin/env bash
# Puts this checkout's commands (package.json "bin": strato, strato-img) on
# PATH the way `npm install -g` and `npm link` do: one symlink per bin in npm's
# global bin directory ($(npm prefix -g)/bin, /usr/bin with Debian's node),
# pointing at the executable: dist/cli/strato.js, and for strato-img the
# native front native/build/strato-img (convert runs there; the rest execs
# dist/cli/strato-img.js). Idempotent and quick; a link left
# by another checkout is replaced (as `npm link` does); a regular file of the
# same name is not ours and is left alone. An unwritable directory is reported
# and skipped: setup goes on, and the commands run by their paths.
#
# Env: STRATO_BIN_DIR overrides the directory (tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd -P)"
say() { echo "setup: $*" >&2; }

# `npm run` exports the global prefix; otherwise ask npm (~0.5 s).
bindir="${STRATO_BIN_DIR:-${npm_config_global_prefix:-$(npm prefix -g 2>/dev/null || true)}/bin}"
if [ ! -d "$bindir" ] || [ ! -w "$bindir" ]; then
  say "cannot link strato and strato-img into $bindir (missing or not writable); run them by path ($root/dist/cli/strato.js, $root/native/build/strato-img) or add that directory to PATH"
  exit 0
fi

# name<TAB>path pairs from package.json, as npm reads them.
bins="$(node -e 'for (const [k, v] of Object.entries(require(process.argv[1]).bin ?? {})) console.log(k + "\t" + v)' "$root/package.json")"
while IFS=$'\t' read -r name rel; do
  [ -n "$name" ] || continue
  target="$root/$rel"
  link="$bindir/$name"
  [ -f "$target" ] || { say "$target is not built; $name not linked"; continue; }
  chmod +x "$target" # npm makes bin targets executable too
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ]; then continue; fi
  if [ -e "$link" ] && [ ! -L "$link" ]; then
    say "$link exists and is not a link; left alone ($name is $target)"
    continue
  fi
  # A new link renamed over the old one: never a moment without the command.
  tmp="$bindir/.$name.strato-$$"
  if ln -sfn "$target" "$tmp" && mv -Tf "$tmp" "$link"; then
    say "linked $link -> $target"
  else
    rm -f "$tmp"
    say "could not link $link; run $target directly"
  fi
done <<<"$bins"

case ":$PATH:" in
  *":$bindir:"*) ;;
  *) say "$bindir is not on PATH; add it to run strato and strato-img by name" ;;
esac
