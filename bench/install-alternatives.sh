#!/usr/bin/env bash
# Installs what the alternative rows of `npm run bench` need (Debian/Ubuntu,
# as root or through sudo). Idempotent: installs only the packages that are
# missing; runs `apt-get update` only when something is.
#
#   openssh-client   ssh-agent, ssh-add, ssh-keygen        (ssh-agent rows)
#   softhsm2         the PKCS#11 token, softhsm2-util      (PKCS#11 rows)
#   p11-kit          `p11-kit server`                      (p11-kit row)
#   p11-kit-modules  p11-kit-client.so                     (p11-kit row)
#   libp11-kit-dev   pkcs11.h for bench/pkcs11-bench.c
#   gcc, libc6-dev   to compile bench/pkcs11-bench.c
set -euo pipefail

packages=(openssh-client softhsm2 p11-kit p11-kit-modules libp11-kit-dev gcc libc6-dev)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-alternatives: all present (${packages[*]})"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

echo "install-alternatives: installing ${missing[*]}"
"${sudo[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
