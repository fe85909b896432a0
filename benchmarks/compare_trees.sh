#!/usr/bin/env bash
# Time two checkouts of skbn against each other, interleaved: round 1 of A,
# round 1 of B, round 2 of A, ...  Each run gets a fresh Numba cache, so both
# trees compile their own kernels.  A slow moment of a shared machine then hits
# both trees alike; compare medians across the rounds.
#
#   git worktree add ../before main
#   PYTHON=$PWD/.venv/bin/python bash benchmarks/compare_trees.sh ../before . ../out 2
#
# Writes OUT/<a|b>.<round>.<case>.txt: `skbn bench` on 1,000,000 x 64, on
# NCHW 64 x 64 x 56 x 56 (axis 1) and on 100,000 x 1024, then
# benchmarks/small_batches.py and benchmarks/training_compare.py.  Runs with
# the Python that runs this script's caller (PYTHON, default python3), on 2
# threads.
set -euo pipefail
a=$(cd "$1" && pwd)
b=$(cd "$2" && pwd)
out=$3
rounds=${4:-2}
python=${PYTHON:-python3}
mkdir -p "$out"
out=$(cd "$out" && pwd)
for round in $(seq "$rounds"); do
    for side in a b; do
        tree=$a
        [ "$side" = b ] && tree=$b
        cache=$(mktemp -d)
        cd "$tree"
        run() { NUMBA_CACHE_DIR=$cache PYTHONPATH=$tree "$python" "$@"; }
        bench=(-m skbn bench --threads 2 --repeats 9 --no-accuracy)
        run "${bench[@]}" >"$out/$side.$round.1m.txt"
        run "${bench[@]}" --shape 64x64x56x56 --axis 1 >"$out/$side.$round.nchw.txt"
        run "${bench[@]}" --shape 100000x1024 \
            --operations fit,transform,fit_transform >"$out/$side.$round.wide.txt"
        run benchmarks/small_batches.py >"$out/$side.$round.small.txt"
        run benchmarks/training_compare.py --norms batch,layer,group \
            >"$out/$side.$round.train.txt"
        rm -rf "$cache"
    done
done
echo "results in $out"
