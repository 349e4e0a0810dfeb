#!/usr/bin/env bash
# Runs the property tests of every parser that reads outside input
# (tests/it/hostile_parsers.rs) with a million cases per target, on the release
# profile, and prints how long each target took.
#
#   ./scripts/fuzz.sh              a million cases per target
#   KB_PROPTEST_CASES=50000 ./scripts/fuzz.sh
#
# The configuration target runs a tenth of the cases (each case writes a file).
set -euo pipefail
cd "$(dirname "$0")/.."
export KB_PROPTEST_CASES="${KB_PROPTEST_CASES:-1000000}"
# Built once; the targets then run from that binary, so an edit made meanwhile
# cannot rebuild it between targets.
binary=$(cargo test --release --locked --test it --no-run --message-format=json |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m.get("target", {}).get("name") == "it":
        print(m["executable"])')
echo "cases per target: $KB_PROPTEST_CASES"
for target in \
  kaizala_bodies_of_any_bytes_never_panic \
  kaizala_bodies_of_any_json_never_panic_and_accepted_ids_are_shaped \
  dataverse_bodies_never_panic_and_accepted_ids_are_guids \
  filters_of_any_text_never_panic \
  templates_of_any_text_never_panic \
  configurations_of_any_text_never_panic; do
  started=$(date +%s)
  "$binary" --exact "hostile_parsers::$target" --quiet >/dev/null
  echo "$target: passed in $(($(date +%s) - started)) s"
done
