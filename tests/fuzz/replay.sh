#!/bin/sh
# Replay the seed corpora and the regression inputs through each harness.
# usage: tests/fuzz/replay.sh WOBBLE REPLAY_DIR HARNESS...
set -eu
W=$1 D=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$HERE/seeds.sh" "$W" "$T/seeds" >/dev/null
fail=0
for h in "$@"; do
    reg=$HERE/regressions/$h
    set -- "$T/seeds/$h"
    [ -d "$reg" ] && set -- "$@" "$reg"
    if TMPDIR=$T "$D/replay_$h" "$@" >"$T/$h.log" 2>&1; then
        echo "ok   $h: $(tail -1 "$T/$h.log")"
    else
        echo "FAIL $h:"; tail -20 "$T/$h.log"; fail=1
    fi
done
exit $fail
