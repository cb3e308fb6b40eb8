#!/usr/bin/env bash
# Installs iproute2 (`ip netns`, `ip link`, `tc`) for the partition drills (tests/drills) when it
# is missing. Idempotent: with `ip` present it only checks. Needs root and apt-get (Debian/Ubuntu).
set -euo pipefail
if command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: iproute2 is missing; install it (Debian/Ubuntu: apt-get install iproute2) as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq iproute2
