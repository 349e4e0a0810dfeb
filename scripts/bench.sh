#!/usr/bin/env bash
# Runs the benchmarks and prints their figures; copy them to docs/benchmarks.md with
# the machine they were measured on.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked --bench http_service
