#!/usr/bin/env bash
# Installs the Debian packages Vigil needs, only those missing (idempotent).
# Runs as root (CI, these machines) or through sudo when available.
set -euo pipefail
PKGS=(build-essential cmake pkg-config clang-format clang libclang-rt-14-dev
      libpq-dev postgresql-15 postgresql-client-15
      libmicrohttpd-dev libjansson-dev libssl-dev libcurl4-openssl-dev
      libnats-dev nats-server libcmocka-dev libyaml-dev curl procps openssl
      chromium nodejs)
# The dashboard's browser test also needs npm (for playwright-core). A
# Node.js from elsewhere (e.g. NodeSource's nodejs) ships its own npm, which
# Debian's npm package would conflict with: ask for it only when absent.
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "vigil: installing missing packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-upgrade "${missing[@]}" >/dev/null
