#!/usr/bin/env bash
# ns per value of softmax, cross_entropy_with_grad and cross_entropy_with_grad_index in float32
# and on bf16 storage, one thread pinned to the last CPU (best of REPEATS calls, the six kernels
# called in turn), built as symsoft.load builds them (gcc -O3 -march=native
# -mprefer-vector-width=256 -ffp-contract=off -fopenmp, OMP_NUM_THREADS=1).
#   benchmarks/storage/time.sh "3 10 32 128 1000" "65536 2097152" 31
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cpu=$(( $(nproc) - 1 ))
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg); CPU $cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo
echo "| K | values | softmax f32 | bf16 | ratio | with_grad f32 | bf16 | ratio | with_grad_index f32 | bf16 | ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for k in $1; do
    python -m symsoft generate -k "$k" -o "$work/k$k" --targets c --force -q >/dev/null
    gcc -std=c99 -O3 -march=native -mprefer-vector-width=256 -ffp-contract=off -fopenmp -DKK="$k" \
        -DSOURCE="\"$work/k$k/softmax_k$k.c\"" "$here/timer.c" -o "$work/timer$k" -lm
    for values in $2; do
        OMP_NUM_THREADS=1 taskset -c "$cpu" "$work/timer$k" "$values" "$3"
    done
done
echo
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
