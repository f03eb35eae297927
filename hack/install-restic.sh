#!/usr/bin/env bash
# install-restic.sh — install restic (Debian package) once, for the benchmark (test/bench), and print
# the path of the binary. Idempotent: does nothing when restic is already on PATH. Uses sudo only
# when not running as root.
set -euo pipefail
if ! command -v restic >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 ||
      { echo "install-restic.sh: restic is missing and sudo is not available; install the restic package" >&2; exit 1; }
    sudo="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 ||
    { echo "install-restic.sh: restic is missing and apt-get is not available; install restic yourself" >&2; exit 1; }
  echo "installing restic (apt-get)" >&2
  { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y restic; } >&2
fi
command -v restic
