#!/bin/sh
# Starts virtlogd and libvirtd when they are not running (hosts without
# systemd, e.g. containers) and waits until libvirt answers. Idempotent: safe
# to call from the stack script on every start. Same steps as
# test/helpers/libvirt.ts (ensureLibvirtd).
#
# What QEMU needs here, checked on Debian 12 (libvirt 9.0, QEMU 7.2) in a
# container: /dev/kvm readable and writable by group kvm (QEMU runs as
# libvirt-qemu:kvm), /var/log/libvirt present. The stock /etc/libvirt/qemu.conf
# works as is (DAC security driver, cgroups v1), so it is not modified.
#
# Environment: LIBVIRT_URI (default qemu:///system),
#              LIBVIRTD_START_TIMEOUT seconds (default 30).
set -eu

uri=${LIBVIRT_URI:-qemu:///system}
timeout=${LIBVIRTD_START_TIMEOUT:-30}

running() { # $1: pid file, $2: process name
  if [ -r "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; then return 0; fi
  pgrep -x "$2" >/dev/null 2>&1
}

if [ -c /dev/kvm ] && getent group kvm >/dev/null 2>&1; then
  chgrp kvm /dev/kvm
  chmod 660 /dev/kvm
fi

mkdir -p /var/log/libvirt /run/libvirt
# Two starters at once (npm test's parallel files, two stacks on one fresh
# machine) both see no daemon; the second `-d` then fails "Unable to obtain
# pidfile" because the first holds it. That is not a failure: wait below for
# whichever daemon won, and report its error only if libvirt never answers.
errs=$(mktemp)
trap 'rm -f "$errs"' EXIT
running /run/virtlogd.pid virtlogd || virtlogd -d 2>>"$errs" || true
running /run/libvirtd.pid libvirtd || libvirtd -d 2>>"$errs" || true

elapsed=0
until virsh -c "$uri" version >/dev/null 2>&1; do
  if [ "$elapsed" -ge "$((timeout * 10))" ]; then
    echo "start-libvirtd: libvirt at $uri did not answer within ${timeout}s" >&2
    cat "$errs" >&2
    exit 1
  fi
  sleep 0.1
  elapsed=$((elapsed + 1))
done
