#!/usr/bin/env bash
# Installs every system package embd needs to build, test and benchmark (Debian 12).
# Idempotent: re-running only installs what is missing.
set -euo pipefail
PKGS=(
  build-essential cmake git pkg-config clang libclang-rt-14-dev libcmocka-dev
  libjansson-dev libutf8proc-dev libmicrohttpd-dev libssl-dev libcurl4-openssl-dev libsqlite3-dev libfaiss-dev libblas-dev liblapack-dev
  python3 python3-numpy python3-yaml ca-certificates
  libhiredis-dev redis-server
  libjpeg-dev libpng-dev libwebp-dev python3-pil
)
# Node.js (for npm pack and the reference tokenizer): Debian's only when none is installed,
# so a newer nodesource install is not replaced.
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
