#!/usr/bin/env bash
# Installs whatever is missing for Strato on Debian 12 + Node 20, idempotently,
# and is quick when everything is already there: Debian packages, npm
# dependencies, the native engine, the TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "setup: $*" >&2; }

# genisoimage: the config drives agents give guests (as Nova does with mkisofs_cmd).
# openssl: signs the certificates of the controller's CA (controller/tls/ca.ts).
# dnsmasq-base, busybox: the DHCP server (and the tests' client); dnsmasq-utils: dhcp_release, for the leases of deleted ports.
# conntrack, iputils-arping: the routers' namespaces (agent/net/l3.ts) forget a removed floating IP's flows and announce a new one.
# iperf3: npm run bench:network measures TCP forwarded through a router namespace with it.
# python3-openstackclient, python3-openstacksdk, tempest: the OpenStack tools users already have, and the tests OpenStack runs, against the REST APIs (controller/rest/).
# postgresql: the store's other engine; the tests start private clusters with its initdb and pg_ctl (test/helpers/postgres.ts), never its service.
pkgs=(nats-server openssl libvirt-daemon-system qemu-system-x86 qemu-utils genisoimage dnsmasq-base dnsmasq-utils conntrack iputils-arping iperf3 busybox libzstd-dev zlib1g-dev python3-grpcio python3-grpc-tools clang libclang-rt-14-dev python3-openstackclient python3-openstacksdk tempest postgresql)
# The packages named that are not installed: one dpkg-query for all of them (one per package
# cost ~1 CPU-s in all, on every npm start).
not_installed() {
  local installed
  installed=" $({ dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null || true; } | sed -n 's/ install ok installed$//p' | tr '\n' ' ') "
  for p in "$@"; do [[ "$installed" == *" $p "* ]] || echo "$p"; done
}
mapfile -t missing < <(not_installed "${pkgs[@]}")
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# node-gyp builds native modules (better-sqlite3, ours) offline against the system's Node headers.
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi

stamp=node_modules/.strato-installed
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi

# tap runs each test file with the loaders of the plugins its Test class was built with
# (node_modules/@tapjs/test/test-built); npm ci installs it built with tap's default set, which
# has @tapjs/typescript. tap rebuilds it for package.json's set (tap.plugin: "!@tapjs/typescript")
# on its first run, but only after it has made the test processes' arguments from the old one:
# every file of a fresh install's first npm test (every CI run) then loads ts-node beside tsx and
# transpiles each module it imports twice (+1 CPU-s for a bare file, +9 for one that starts a
# controller). Rebuild it here when its set is not package.json's (~0.4 CPU-s to check, ~9 once).
tap_stamp=node_modules/.strato-tap-built
if [ ! -f "$tap_stamp" ] || [ package.json -nt "$tap_stamp" ] || [ "$stamp" -nt "$tap_stamp" ]; then
  if ! node --input-type=module -e "
    import '@tapjs/core'
    import { signature } from '@tapjs/test'
    import { TapConfig } from '@tapjs/config'
    process.exit((await TapConfig.load()).pluginSignature === signature ? 0 : 1)" 2>/dev/null; then
    say "building tap's Test class for package.json's plugins (tap build)"
    node_modules/.bin/tap build >/dev/null
  fi
  touch "$tap_stamp"
fi

if [ -f native/build.sh ]; then bash native/build.sh; fi

# Incremental TypeScript build into dist/ (the bin entries and the stack run from there);
# quick when nothing changed since the last one (cli/stack/build.sh).
bash cli/stack/build.sh
# The bin entries are executable, as npm makes them when it installs the package.
chmod +x dist/cli/strato.js dist/cli/strato-img.js
# The commands on PATH, as an installed package's bins are (cli/stack/link-bins.sh).
bash cli/stack/link-bins.sh

# The demo guest image (cli/stack/guest/): built once from Debian packages
# (apt-get download), cached under .strato/guest/, quick when cached. Its
# tools (and the SSH client tests log into it with) are installed here, best
# effort: without apt access the stack still starts, with a warning, and the
# boot-sector image stands in for it.
guest_pkgs=(syslinux syslinux-common mtools dosfstools fdisk kmod e2fsprogs binutils openssh-client)
mapfile -t guest_missing < <(not_installed "${guest_pkgs[@]}")
if [ ${#guest_missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing the demo guest's build tools: ${guest_missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${guest_missing[@]}" >/dev/null 2>&1 ||
    { $sudo apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${guest_missing[@]}" >/dev/null 2>&1; } ||
    say "warning: could not install ${guest_missing[*]}"
fi
if ! node dist/cli/stack/guest/build.js >/dev/null; then
  say "warning: the demo guest image could not be built (see above); npm start registers the boot-sector image as cirros-0.3.4-x86_64-disk instead"
fi
