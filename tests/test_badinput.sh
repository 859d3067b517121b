#!/bin/sh
# The bad-input corpus (tests/badinput/cases.txt, docs/reliability.md): each
# case must exit with its status (1 bad input, 2 bad command line), give a
# one-line error that names the file and the problem (every stderr line is one
# "wobble: ..." message: the error, and for a command over several inputs its
# count of failures), and leave no result file and no temporary file.
# usage: test_badinput.sh WOBBLE REF_DIR ENOSPC_SHIM
W=$1 R=$2 SHIM=$3
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/wobble_bad_XXXXXX")
trap 'rm -rf "$T"' EXIT
B=$T/bad
python3 "$HERE/badinput/make_inputs.py" "$R" "$B" || { echo "FAIL: make_inputs.py"; exit 1; }
M=$R/models/clip-f32-openai
I=$R/data/syn_33x17.png
D=$B/tree-train
mkdir -p "$T/out"
pass=0 fail=0
trim() { printf '%s' "$1" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//'; }
while IFS='@' read -r name code msg out cmd; do
    name=$(trim "$name")
    case "$name" in ''|'#'*) continue ;; esac
    code=$(trim "$code") msg=$(trim "$msg") out=$(trim "$out") cmd=$(trim "$cmd")
    O=$T/out/$name
    pre=""
    case "$cmd" in ENOSPC=*)
        pat=${cmd%% *}; pat=${pat#ENOSPC=}; cmd=${cmd#* }
        pre="env LD_PRELOAD=$SHIM WOBBLE_ENOSPC=$pat ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" ;;
    esac
    (eval "$pre $cmd") >"$T/stdout" 2>"$T/stderr" </dev/null
    rc=$?
    why=""
    [ "$rc" -eq "$code" ] || why="exit $rc, expected $code"
    [ -z "$why" ] && ! grep -Eq -- "$msg" "$T/stderr" && why="no stderr line matches /$msg/"
    [ -z "$why" ] && grep -qv '^wobble: ' "$T/stderr" && why="stderr holds more than one-line messages"
    [ -z "$why" ] && [ "$(wc -l < "$T/stderr")" -gt 3 ] && why="$(wc -l < "$T/stderr") lines on stderr"
    if [ -z "$why" ] && [ "$out" != "-" ]; then
        o=$(eval "printf '%s' \"$out\"")
        if [ -f "$o" ]; then why="left $o"
        elif [ -d "$o" ] && [ -n "$(find "$o" -type f ! -path '*/cache/*' ! -name config.json)" ]; then
            why="left result files in $o: $(find "$o" -type f ! -path '*/cache/*' ! -name config.json | head -3 | tr '\n' ' ')"
        fi
    fi
    [ -z "$why" ] && [ -n "$(find "$T/out" "$B" -name '*.tmp.*')" ] && why="left a temporary file: $(find "$T/out" "$B" -name '*.tmp.*' | head -1)"
    if [ -z "$why" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL $name: $why"
        echo "     stderr: $(head -c 400 "$T/stderr")"
    fi
    find "$T/out" -name '*.tmp.*' -exec rm -f {} + 2>/dev/null
done < "$HERE/badinput/cases.txt"
echo "bad-input corpus: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
