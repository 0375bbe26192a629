#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds (default 20) on its committed
# corpus; a crash fails the run and leaves the input in fuzz/artifacts/.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -uo pipefail
cd "$(dirname "$0")"
secs="${1:-20}"
cargo +nightly fuzz build -O || exit 1
failed=0
for t in policy ingest_body signature topic inbound; do
  log="$(mktemp)"
  # A scratch copy of the corpus: a short run must not change the committed one.
  work="$(mktemp -d)"
  cp -r "corpus/$t/." "$work/"
  if cargo +nightly fuzz run -O "$t" "$work" -- -max_total_time="$secs" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    echo "fuzz $t: ok, $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') runs in ${secs}s"
  else
    echo "fuzz $t: FAILED"
    grep -E -A30 "panicked|ERROR: libFuzzer|SUMMARY" "$log" | head -60
    failed=1
  fi
  rm -rf "$log" "$work"
done
exit "$failed"
