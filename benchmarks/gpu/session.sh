#!/usr/bin/env bash
# One call on the GPU machine: install the official kernels from the carried wheels, make this checkout
# importable as `ssmscope`, then run the named phases. Everything lands in $OUT/<phase>/ and is packed
# into $OUT/results.tgz (the device tool returns at most 8 files).
#   usage: [PHASE_LIMIT=240] [OPS="ssd ..."] [GRID=upstream] bash benchmarks/gpu/session.sh env gputests check bench calibrate ncu
# Lesson (2026-11-22): a call killed at its limit returns only what is under $OUT, so every phase is
# time-limited and the results are packed after each one. Official SSD autotuning and Triton compiles of
# many flag variants take minutes: give `check ssd` and the scan grids their own calls or a --where.
set -uo pipefail
OUT=${OUT:-/tmp/ssmscope-out}
RES=/tmp/results; mkdir -p "$RES" "$OUT"
export PYTHONUNBUFFERED=1

python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devwheels/*.whl || exit 1
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/ssmscope
export PYTHONPATH=/tmp/pkg:/tmp/site
SSM="python3 -m ssmscope"

run_phase() {  # name, command...: log to $RES/<name>.log under a time limit, keep going on failure,
  # and re-pack $OUT/results.tgz after every phase so a later timeout loses nothing already measured.
  local name=$1; shift
  echo "=== $name (limit ${PHASE_LIMIT:-240} s): $*"; local t0=$SECONDS
  timeout "${PHASE_LIMIT:-240}" "$@" > "$RES/$name.log" 2>&1; local rc=$?
  echo "=== $name rc=$rc in $((SECONDS - t0)) s"; tail -n 25 "$RES/$name.log"
  tar -czf "$OUT/results.tgz" -C /tmp results
}

for phase in "$@"; do
  case $phase in
    env)
      run_phase env bash -c "nvidia-smi; python3 -c 'import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())'; $SSM ops" ;;
    gputests)
      run_phase gputests python3 -m pytest -q -m gpu -p no:cacheprovider ${GPUTESTS:-tests} ;;
    check)
      for op in ${OPS:-selective_scan causal_conv1d ssd attention selective_state_update causal_conv1d_update attention_decode}; do
        run_phase "check_$op" $SSM check "$op" --grid ${GRID:-upstream} --seed 2026 --save "$RES/check_$op.jsonl"
      done ;;
    bench)
      run_phase bench $SSM bench all --out "$RES/bench" ;;
    calibrate)
      run_phase calibrate $SSM roofline calibrate --out "$RES/h100-sxm@measured.yaml" ;;
    ncu)
      run_phase ncu $SSM ncu all --grid quick --out "$RES/ncu" ;;
    *)
      echo "unknown phase $phase" ;;
  esac
done
ls -la "$OUT"
