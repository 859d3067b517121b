#!/bin/sh
# The demo: list the operations, then apply every operation at its default
# grid to four Kodak images and report what was written.
# usage: tools/demo.sh WOBBLE SHARED_DIR OUT_DIR
set -eu
W="$1"; SHARED="$2"; OUT="$3"
KODAK="$SHARED/data/kodak"
if [ ! -d "$KODAK" ]; then
  echo "demo: $KODAK not found; set WOBBLE_SHARED to the shared folder" >&2
  exit 1
fi
"$W" ops
echo
mkdir -p "$OUT"
for op in $("$W" ops --json | sed -n 's/.*"name": "\(.*\)".*/\1/p'); do
  start=$(date +%s.%N)
  "$W" perturb --op "$op" --seed 1 "$KODAK/kodim01.png" "$KODAK/kodim04.png" "$KODAK/kodim15.png" "$KODAK/kodim23.png" "$OUT/$op"
  end=$(date +%s.%N)
  n=$(ls "$OUT/$op" | wc -l)
  printf "%-15s %3d images written to %s/%s in %.2f s\n" "$op" "$n" "$OUT" "$op" "$(awk "BEGIN{print $end - $start}")"
done
