#!/bin/sh
# Symbol hygiene of libwobble (issue: code health): every exported symbol has
# a module prefix (wobble_ only for the public API of include/wobble.h), and
# no .c file under src/ declares a function prototype of its own (cross-file
# symbols are declared in headers).
# usage: test_symbols.sh LIBWOBBLE_A SOURCE_DIR
LIB=$1 SRC=$2
fail=0
syms=$(nm -g --defined-only "$LIB" | awk '$2 ~ /^[TDBRV]$/ {print $3}' | sort -u)
pub=$(grep -o '\bwobble_[a-z0-9_]*[[:space:]]*(' "$SRC/include/wobble.h" | sed 's/[[:space:]]*($//' | sort -u)
for s in $syms; do
    case "$s" in
    wobble_*) echo "$pub" | grep -qx "$s" || { echo "FAIL: $s is exported with the public prefix but not declared in include/wobble.h"; fail=1; } ;;
    core_*|image_*|perturb_*|model_*|st_*|train_*|eval_*|probe_*|data_*|metrics_*|report_*|depth_*) ;;
    *) echo "FAIL: $s is exported without a module prefix"; fail=1 ;;
    esac
done
# file-scope prototypes in .c files: "type name(args);" without static
protos=$(grep -n -E '^[a-zA-Z_][a-zA-Z0-9_ \*]*[ \*][a-z_][a-z0-9_]*\([^)]*\);$' "$SRC"/src/*/*.c | grep -v -E ':(static|return|typedef) ')
if [ -n "$protos" ]; then echo "FAIL: prototypes in .c files:"; echo "$protos"; fail=1; fi
n=$(echo "$syms" | wc -l)
[ $fail -eq 0 ] && echo "ok: $n exported symbols, all prefixed; no prototypes in src/*.c"
exit $fail
