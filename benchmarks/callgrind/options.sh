#!/usr/bin/env bash
# Instructions per logit (valgrind --tool=callgrind: repeatable on a shared machine) of the
# options path (issue 17): the fused loss and gradient with every option on, integer labels
# under MEAN and probability targets under SUM, float and double; built without OpenMP and
# with -fopenmp (run on 1 thread). Run it in two checkouts to compare them.
#   benchmarks/callgrind/options.sh 10 128 1000
# gcc -O3 -march=x86-64-v3 (valgrind cannot run AVX-512), -ffp-contract=off; about 200,000
# values per call; the count of filling the arrays ("none") is subtracted.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "| K | dtype | index, mean | soft, sum | index, mean (-fopenmp) | soft, sum (-fopenmp) |"
echo "|---|---|---|---|---|---|"
for k in "$@"; do
    python -m symsoft generate -k "$k" -o "$work/k$k" --targets c --force -q >/dev/null
    rows=$(( 200000 / k )); [ "$rows" -lt 64 ] && rows=64
    for dtype in "f32 float" "f64 double"; do
        read -r sfx ctype <<< "$dtype"
        line="| $k | $sfx"
        for openmp in "" "-fopenmp"; do
            gcc -std=c99 -O3 -march=x86-64-v3 -ffp-contract=off $openmp -DKK="$k" -DSFX="$sfx" \
                -DTYPE="$ctype" -DSOURCE="\"$work/k$k/softmax_k$k.c\"" \
                "$here/options_driver.c" -o "$work/drv" -lm
            count() {
                OMP_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
                    "$work/drv" "$1" "$rows" 2>&1 | awk '/Collected/ {print $4}'
            }
            base=$(count none)
            for case in index_mean soft_sum; do
                line="$line | $(python3 -c "print(f'{($(count $case) - $base) / ($rows * $k):.2f}')")"
            done
        done
        echo "$line |"
    done
done
