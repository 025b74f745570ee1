#!/usr/bin/env bash
# Issue 23's reproduction in one command, at low priority (the CPU is shared): see scripts/reproduce_cpu.py.
#   scripts/reproduce_cpu.sh [--out runs/reproduce] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice -n 19 "${PYTHON:-python}" scripts/reproduce_cpu.py "$@"
