#!/usr/bin/env bash
# mpirun across hosts with a checked host file:  scripts/mpirun_hosts.sh HOSTFILE N COMMAND...
# The host file (MPICH Hydra format, scripts/hostfile.example): one host a line, optionally ":slots";
# '#' starts a comment. A file that names no host is refused here with one line (exit 2), instead of
# MPICH's own message after start-up. Runs .venv's mpirun (the mpich wheel) unless MPIRUN is set.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: scripts/mpirun_hosts.sh HOSTFILE N COMMAND..." >&2
  exit 2
fi
hostfile=$1 n=$2
shift 2
if [ ! -f "$hostfile" ]; then
  echo "mpirun_hosts: error: host file $hostfile not found" >&2
  exit 2
fi
hosts=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$hostfile" | grep -c . || true)
if [ "$hosts" -eq 0 ]; then
  echo "mpirun_hosts: error: host file $hostfile names no hosts (one host a line, e.g. node01:16)" >&2
  exit 2
fi
if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
  echo "mpirun_hosts: error: the number of ranks must be a positive integer, got '$n'" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
exec "${MPIRUN:-$here/.venv/bin/mpirun}" -f "$hostfile" -n "$n" "$@"
