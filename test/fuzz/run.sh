#!/usr/bin/env bash
# make fuzz: runs each libFuzzer harness of BUILD (built with CASCA_FUZZ=ON) for SECONDS, one
# after the other. New inputs go to BUILD/fuzz-corpus/<harness> (never into the source tree: only
# the small seed corpus in test/fuzz/corpus is committed); a crash is written to
# BUILD/fuzz-artifacts/<harness>/ and stops the run. Commit a crash input, once fixed, to
# test/fuzz/crashes/<harness>/ so that `make test` replays it.
#   usage: test/fuzz/run.sh BUILD [SECONDS] [HARNESS...]
set -euo pipefail
build=$(cd "$1" && pwd)
seconds=${2:-60}
shift $(($# >= 2 ? 2 : $#))
src=$(cd "$(dirname "$0")" && pwd)
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(config slo_file settings_file hook_json carbon_csv proto)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/casca-fuzz-run-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for h in "${harnesses[@]}"; do
  bin="$build/test/fuzz/fuzz_$h"
  corpus="$build/fuzz-corpus/$h" artifacts="$build/fuzz-artifacts/$h"
  mkdir -p "$corpus" "$artifacts"
  seeds=("$src/corpus/$h")
  [ -d "$src/crashes/$h" ] && seeds+=("$src/crashes/$h")
  echo "== fuzz_$h for ${seconds}s (corpus $corpus)"
  # the harnesses write their files under TMPDIR; run from it so nothing else lands in the tree
  if ! (cd "$tmp" && TMPDIR="$tmp" "$bin" -max_total_time="$seconds" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "${seeds[@]}" \
        >"$build/fuzz-$h.log" 2>&1); then
    tail -n 40 "$build/fuzz-$h.log"
    if [ -z "$(ls -A "$artifacts")" ]; then
      echo "fuzz_$h was stopped (no crash input written); log $build/fuzz-$h.log" >&2
    else
      echo "fuzz_$h FAILED: input in $artifacts/, log $build/fuzz-$h.log" >&2
    fi
    exit 1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$build/fuzz-$h.log" | sed 's/^/   /'
done
