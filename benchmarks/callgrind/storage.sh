#!/usr/bin/env bash
# Instructions per value (valgrind --tool=callgrind) of kernels on bf16 storage against the same
# kernels in float32, as fused.sh builds and counts them (gcc -O3 -march=x86-64-v3, no OpenMP).
#   benchmarks/callgrind/storage.sh 3 10 32 128 1000
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "| K | kernel | f32 | bf16 | bf16 / f32 |"
echo "|---|---|---|---|---|"
for k in "$@"; do
    python -m symsoft generate -k "$k" -o "$work/k$k" --targets c --force -q >/dev/null
    gcc -std=c99 -O3 -march=x86-64-v3 -ffp-contract=off -DKK="$k" \
        -DSOURCE="\"$work/k$k/softmax_k$k.c\"" "$here/driver.c" -o "$work/drv$k" -lm
    rows=$(( 200000 / k )); [ "$rows" -lt 64 ] && rows=64
    count() {
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$work/drv$k" "$1" "$2" "$rows" 2>&1 |
            awk '/Collected/ {print $4}'
    }
    base=$(count none f32)
    for kernel in softmax grad with_grad_index; do
        f=$(count "$kernel" f32)
        h=$(count "$kernel" bf16)
        python3 -c "
f, h = ($f - $base) / ($rows * $k), ($h - $base) / ($rows * $k)
print(f'| $k | $kernel | {f:.2f} | {h:.2f} | {h / f:.2f} |')"
    done
done
