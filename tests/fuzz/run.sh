#!/bin/sh
# Run each fuzz harness for SECONDS on its corpus (seeded from the tests),
# print executions and crashes per harness, exit 1 if any crashed.
# usage: tests/fuzz/run.sh BUILD_DIR SECONDS [HARNESS...]
set -u
B=$1 S=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
hs=${*:-image safetensors config tokenizer npy dataset opspec cache embeddings merge}
mkdir -p "$B/corpus" "$B/artifacts"
[ -d "$B/seeds" ] || "$HERE/seeds.sh" "$B/../release/wobble" "$B/seeds" >/dev/null
failed=0
printf '%-12s %12s %9s %7s\n' harness executions exec/s crashes
for h in $hs; do
    mkdir -p "$B/corpus/$h" "$B/artifacts/$h"
    # safetensors: the header is what is parsed; the small seeds of seeds.sh
    # cover every dtype, and the tower seeds (up to 209 kB) would otherwise
    # set the length limit and slow each execution 40-fold
    extra=""
    [ "$h" = safetensors ] && extra="-max_len=8192"
    log=$B/artifacts/$h.log
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$B/tests/fuzz/fuzz_$h" $extra -max_total_time="$S" -timeout=20 -rss_limit_mb=2560 -print_final_stats=1 \
        -artifact_prefix="$B/artifacts/$h/" "$B/corpus/$h" "$B/seeds/$h" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    crashes=$(ls "$B/artifacts/$h" | grep -c -E '^(crash|leak|timeout|oom)-' || true)
    printf '%-12s %12s %9s %7s\n' "$h" "${runs:-?}" "${rate:-?}" "$crashes"
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        grep -m3 -E 'ERROR|SUMMARY|runtime error' "$log" | sed 's/^/    /'
    fi
done
exit $failed
