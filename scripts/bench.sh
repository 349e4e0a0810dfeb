#!/usr/bin/env bash
# Runs a benchmark and prints its figures; copy them to docs/benchmarks.md with the
# command and the machine they were measured on.
#
#   ./scripts/bench.sh [http]     the HTTP service and the webhook receiver on loopback
#   ./scripts/bench.sh ratelimit  real per-minute quotas, one replica and three (a few minutes)
#   ./scripts/bench.sh queue      jobs/s through one replica, on SQLite and on Redis
#   ./scripts/bench.sh soak       a steady trickle for 30 minutes per backend: jobs, ages, RSS,
#                                 the SQLite file (KB_SOAK_BACKENDS=sqlite|redis picks one)
#   ./scripts/bench.sh chaos      three replicas, 15% Kaizala errors, a replica killed every 5 s
#   ./scripts/bench.sh ingest     durable Dataverse webhook ingest with wrk at 1, 16, 64 connections
#   ./scripts/bench.sh latency    webhook sent → survey at the emulator, idle and beside a backlog
#
# KB_BENCH_BACKENDS=sqlite|redis runs ingest and latency on one backend only.
# KB_BENCH_MINUTES changes how long ratelimit and chaos (default 3) and soak (default 30) run.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-http}" in
  http)
    cargo bench --locked --bench http_service
    ;;
  ingest | latency)
    if ! command -v wrk >/dev/null 2>&1; then
      if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
      else
        echo "wrk is missing: sudo apt-get install wrk" >&2
        exit 1
      fi
    fi
    command -v redis-server >/dev/null 2>&1 || {
      echo "redis-server is missing: ./scripts/test.sh installs it" >&2
      exit 1
    }
    cargo build --release --locked
    cargo bench --locked --bench fastpath -- "$1"
    ;;
  ratelimit | queue | soak | chaos)
    command -v redis-server >/dev/null 2>&1 || {
      echo "redis-server is missing: ./scripts/test.sh installs it" >&2
      exit 1
    }
    cargo build --release --locked
    cargo bench --locked --bench backlog -- "$1"
    ;;
  *)
    echo "usage: $0 [http|ratelimit|queue|soak|chaos|ingest|latency]" >&2
    exit 2
    ;;
esac
