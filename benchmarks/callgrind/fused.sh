#!/usr/bin/env bash
# Instructions per value (valgrind --tool=callgrind: repeatable on a shared machine) of the
# gradient alone and fused with the loss, soft and integer labels, float and double.
#   benchmarks/callgrind/fused.sh 3 10 32 128 1000
# gcc -O3 -march=x86-64-v3 (AVX2 + FMA: valgrind cannot run AVX-512), strict IEEE, the flags
# symsoft.load uses otherwise. About 200,000 values per call; the count of filling the arrays
# ("none") is subtracted.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "| K | dtype | grad | with_grad | ratio | grad_index | with_grad_index | ratio | vs grad |"
echo "|---|---|---|---|---|---|---|---|---|"
for k in "$@"; do
    python -m symsoft generate -k "$k" -o "$work/k$k" --targets c --force -q >/dev/null
    gcc -std=c99 -O3 -march=x86-64-v3 -ffp-contract=off -DKK="$k" \
        -DSOURCE="\"$work/k$k/softmax_k$k.c\"" "$here/driver.c" -o "$work/drv$k" -lm
    rows=$(( 200000 / k )); [ "$rows" -lt 64 ] && rows=64
    count() {
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$work/drv$k" "$1" "$2" "$rows" 2>&1 |
            awk '/Collected/ {print $4}'
    }
    for dtype in f32 f64; do
        base=$(count none "$dtype")
        declare -A per
        for kernel in grad with_grad grad_index with_grad_index; do
            per[$kernel]=$(python3 -c "print(($(count "$kernel" "$dtype") - $base) / ($rows * $k))")
        done
        python3 -c "
g, w, gi, wi = ${per[grad]}, ${per[with_grad]}, ${per[grad_index]}, ${per[with_grad_index]}
print(f'| $k | $dtype | {g:.2f} | {w:.2f} | {w / g:.2f} | {gi:.2f} | {wi:.2f} | {wi / gi:.2f} | {wi / g:.2f} |')"
    done
done
