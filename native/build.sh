#!/usr/bin/env bash
# Builds the native engine: the Node addon (node-gyp, offline against the
# system Node headers), the plain-C library + self-test binary, and the
# libFuzzer harness when clang's fuzzer runtime is available.
# Idempotent and fast when already built.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$here"

need_pkgs=()
for h in /usr/include/zlib.h:zlib1g-dev /usr/include/zstd.h:libzstd-dev; do
  [ -e "${h%%:*}" ] || need_pkgs+=("${h##*:}")
done
command -v make >/dev/null || need_pkgs+=(make)
command -v g++ >/dev/null || need_pkgs+=(g++)
if [ "${STRATO_NO_FUZZ:-0}" != 1 ]; then
  command -v clang >/dev/null || need_pkgs+=(clang)
  ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need_pkgs+=(libclang-rt-14-dev)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "native/build.sh: installing build dependencies: ${need_pkgs[*]}" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null 2>&1 ||
      { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null 2>&1; } ||
      echo "native/build.sh: could not install ${need_pkgs[*]} (continuing)" >&2
  else
    echo "native/build.sh: not root; install ${need_pkgs[*]} yourself" >&2
  fi
fi

export npm_config_nodedir="${npm_config_nodedir:-/usr}"
gyp="$root/node_modules/node-gyp/bin/node-gyp.js"
addon="$here/build/Release/strato_img.node"
stamp="$here/build/.addon-stamp"
newest_src="$(find "$here/src" "$here/addon" "$here/binding.gyp" -newer "$stamp" -print -quit 2>/dev/null || true)"
if [ ! -f "$addon" ] || [ ! -f "$stamp" ] || [ -n "$newest_src" ]; then
  if [ ! -f "$here/build/Makefile" ] || [ "$here/binding.gyp" -nt "$here/build/Makefile" ]; then
    mkdir -p "$here/build"
    node "$gyp" configure --nodedir="$npm_config_nodedir" >"$here/gyp-configure.log" 2>&1 ||
      { cat "$here/gyp-configure.log" >&2; exit 1; }
    mv "$here/gyp-configure.log" "$here/build/gyp-configure.log"
  fi
  node "$gyp" build -j 2 >"$here/build/gyp-build.log" 2>&1 || { cat "$here/build/gyp-build.log" >&2; exit 1; }
  touch "$stamp"
fi

make -s -j2 all
if command -v clang >/dev/null && ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  make -s fuzz
else
  echo "native/build.sh: clang libFuzzer runtime not available; fuzz harness not built" >&2
fi
echo "native/build.sh: ok ($addon)"
