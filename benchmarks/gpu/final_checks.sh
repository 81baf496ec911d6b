#!/usr/bin/env bash
# One bounded call on the GPU machine: upstream-grid checks of the scan families and the device calibration.
# Every phase has its own time limit and writes straight into $OUT, so a slow phase loses nothing else.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devwheels/*.whl 2>/dev/null
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/ssmscope
export PYTHONPATH=/tmp/pkg:/tmp/site PYTHONUNBUFFERED=1
S="python3 -m ssmscope"
phase() { local t=$1 name=$2; shift 2; echo "=== $name (limit $t s)"; local t0=$SECONDS
  timeout "$t" "$@" > "$OUT/$name.log" 2>&1; echo "=== $name rc=$? in $((SECONDS - t0)) s"; tail -n 8 "$OUT/$name.log"; }
phase 80 ssu $S check selective_state_update --grid upstream --seed 2026 --save "$OUT/ssu.jsonl"
phase 170 ss $S check selective_scan --grid upstream --seed 2026 --where D=True,z=True,delta_bias=True,softplus=True --save "$OUT/ss.jsonl"
phase 150 ssd $S check ssd --grid upstream --seed 2026 --where D=True --save "$OUT/ssd.jsonl"
phase 90 cal $S roofline calibrate --out "$OUT/calibrate.yaml"
