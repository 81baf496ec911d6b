#!/usr/bin/env bash
# One call on the GPU machine: install the official kernels from the carried wheels, make this checkout
# importable as `ssmscope`, then run the named phases. Everything lands in $OUT/<phase>/ and is packed
# into $OUT/results.tgz (the device tool returns at most 8 files).
#   usage: [PHASE_LIMIT=240] [OPS="ssd ..."] [GRID=upstream] [CHECK_FLAGS="--impl triton"] [MODELS=...] bash benchmarks/gpu/session.sh \
#          env probe gputests check knobs knobs_long knobs_gaps knobs_prefetch knobs_v5 knobs_occupancy knobs_n64
#          scan_tiling scan (= scan_versions, then scan_paper) scan_paper scan_v6 scan_v6_knobs scan_v6_warps
#          scan_waves ncu_why conv1d_gap conv1d_placement knobs_conv1d_window bench targets ncu_targets calibrate
#          ncu e2e e2e_breakdown e2e_frontier
# Lesson (2026-11-22): a call killed at its limit returns only what is under $OUT, so every phase is
# time-limited and the results are packed after each one. Official SSD autotuning and Triton compiles of
# many flag variants take minutes: give `check ssd` and the scan grids their own calls or a --where.
set -uo pipefail
OUT=${OUT:-/tmp/ssmscope-out}
RES=/tmp/results; mkdir -p "$RES" "$OUT"
export PYTHONUNBUFFERED=1

[ -d /tmp/site/mamba_ssm ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devwheels/*.whl || exit 1
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/ssmscope
export PYTHONPATH=/tmp/pkg:/tmp/site
SSM="python3 -m ssmscope"

run_phase() {  # name, command...: log to $RES/<name>.log under a time limit, keep going on failure,
  # and re-pack $OUT/results.tgz after every phase so a later timeout loses nothing already measured.
  local name=$1; shift
  echo "=== $name (limit ${PHASE_LIMIT:-240} s): $*"; local t0=$SECONDS
  timeout -s INT -k 20 "${PHASE_LIMIT:-240}" "$@" > "$RES/$name.log" 2>&1; local rc=$?
  echo "=== $name rc=$rc in $((SECONDS - t0)) s"; tail -n 25 "$RES/$name.log"
  tar -czf "$OUT/results.tgz" -C /tmp results
}

for phase in "$@"; do
  case $phase in
    env)
      run_phase env bash -c "nvidia-smi; python3 -c 'import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())'; $SSM ops" ;;
    probe)
      run_phase probe python3 benchmarks/gpu/probe_copy.py ;;
    gputests)
      run_phase gputests python3 -m pytest -q -m gpu -p no:cacheprovider ${GPUTESTS:-tests} ;;
    check)
      for op in ${OPS:-selective_scan causal_conv1d ssd attention selective_state_update causal_conv1d_update attention_decode}; do
        run_phase "check_$op" $SSM check "$op" --grid ${GRID:-upstream} --seed 2026 ${CHECK_FLAGS:-} --save "$RES/check_$op.jsonl"
      done ;;
    bench)      # the default sweep: every family at the paper's shapes, all implementations; RESUME_FROM=DIR (a run
      # of an earlier call, carried in the checkout) seeds it, so --resume goes on where that call stopped
      [ -n "${RESUME_FROM:-}" ] && [ ! -d "$RES/paper" ] && cp -r "$RESUME_FROM" "$RES/paper"
      run_phase bench $SSM bench all --grid paper --budget ${BUDGET:-0.3} --peaks h100-sxm --resume --csv --out "$RES/paper" ;;
    targets)    # issue 7's shapes (36 points), timed, then profiled under ncu into the same run, then the timer check
      run_phase targets $SSM bench --config benchmarks/sweeps/h100_targets.yaml --peaks h100-sxm --resume --csv --out "$RES/targets" ;;
    scan_tiling) # selective_scan v5's tilings
      run_phase scan_tiling python3 benchmarks/gpu/knob_sweep.py selective_scan --impl triton_v5 --knob chunk=4,8 --knob per_thread=32,64 \
        --shape seqlen=4096,dstate=16 --shape seqlen=16384,dstate=16 --shape seqlen=4096,dstate=64 --shape seqlen=16384,dstate=64 ;;
    scan)       # the selective scan's versions against the official kernel at issue 7's shapes, then at the paper's
      run_phase scan_versions $SSM bench --config benchmarks/sweeps/h100_scan_versions.yaml --peaks h100-sxm --resume --csv --out "$RES/scan"
      ;&
    scan_paper)
      run_phase scan_paper $SSM bench selective_scan --grid paper --impl official,triton,triton_v5 --budget ${BUDGET:-0.3} \
        --peaks h100-sxm --resume --csv --out "$RES/scan_paper" ;;
    knobs)      # the tilings behind issue 7's near misses: SSD's segments at H48 L16K, the state update's rows at B64
      ssd_shape="batch=1,seqlen=16384,nheads=48,headdim=64,ngroups=1"
      run_phase knobs_ssd python3 benchmarks/gpu/knob_sweep.py ssd --knob segment_len=16384,8192,5504,4096,3072,2048,1536,1024 \
        --shape $ssd_shape,dstate=64,chunk_size=128 --shape $ssd_shape,dstate=64,chunk_size=256 \
        --shape $ssd_shape,dstate=128,chunk_size=128 --shape $ssd_shape,dstate=128,chunk_size=256
      run_phase knobs_ssu python3 benchmarks/gpu/knob_sweep.py selective_state_update --knob block_m=8,16,32,64,128 \
        --knob num_warps=1,2,4,8 --shape batch=64,dim=1536,dstate=16 --shape batch=1,dim=1536,dstate=16 ;;
    knobs_long) # the same at L64K (H24, H48) and the Mamba-2 state update (N128), after the heuristics changed
      ssd_shape="batch=1,seqlen=65536,headdim=64,ngroups=1"
      run_phase knobs_ssd_64k python3 benchmarks/gpu/knob_sweep.py ssd --knob segment_len=13120,5984,4096,3008,2048,1504 \
        --shape $ssd_shape,nheads=24,dstate=128,chunk_size=256 --shape $ssd_shape,nheads=48,dstate=128,chunk_size=256 \
        --shape $ssd_shape,nheads=24,dstate=64,chunk_size=128 --shape $ssd_shape,nheads=48,dstate=64,chunk_size=128
      m2="dim=64,dstate=128,heads=true"
      run_phase knobs_ssu_m2 python3 benchmarks/gpu/knob_sweep.py selective_state_update --knob block_m=2,4,8,16 \
        --knob num_warps=1,2,4 --shape batch=1,nheads=24,$m2 --shape batch=64,nheads=24,$m2 --shape batch=64,nheads=48,$m2 ;;
    knobs_gaps) # the paper grid's misses: short scans and SSDs, attention at d128, channel-last conv1d
      run_phase knobs_scan_short python3 benchmarks/gpu/knob_sweep.py selective_scan --impl triton_v5 --knob min_segment=32,64,128 \
        --shape seqlen=1024,dstate=16 --shape seqlen=4096,dstate=16
      ssd_shape="batch=1,headdim=64,ngroups=1,dstate=128,chunk_size=256"
      run_phase knobs_ssd_short python3 benchmarks/gpu/knob_sweep.py ssd --knob segment_len=128,256,512 \
        --shape $ssd_shape,seqlen=1024,nheads=24 --shape $ssd_shape,seqlen=4096,nheads=24 --shape $ssd_shape,seqlen=4096,nheads=80
      run_phase knobs_attention_d128 python3 benchmarks/gpu/knob_sweep.py attention --knob block_m=64,128 \
        --knob block_n=32,64 --knob num_warps=4,8 --shape seqlen=16384,heads=12,kv_heads=2,head_dim=128
      run_phase knobs_conv1d_cl python3 benchmarks/gpu/knob_sweep.py causal_conv1d --knob cl_design=rows \
        --knob block_d=64,128,256 --knob block_l=16,32,64 --knob chunks=1,4 \
        --shape dim=3328,seqlen=16384,channel_last=true --shape dim=3328,seqlen=65536,channel_last=true ;;
    knobs_conv1d_window) # channel-last: the window design against the rows one, then its steps per thread
      cl="--shape dim=3328,seqlen=4096,channel_last=true --shape dim=3328,seqlen=16384,channel_last=true \
        --shape dim=3328,seqlen=65536,channel_last=true"
      run_phase knobs_conv1d_designs python3 benchmarks/gpu/knob_sweep.py causal_conv1d --knob cl_design=window,rows $cl
      run_phase knobs_conv1d_window python3 benchmarks/gpu/knob_sweep.py causal_conv1d --knob block_l=4,8,16,32,64,128 \
        --knob unroll=4,8 --knob prefetch=true,false $cl ;;
    knobs_prefetch) # selective_scan v4 with u, δ, z (1) and B, C (2) loaded one chunk ahead, at three tile sizes
      run_phase knobs_scan_prefetch python3 benchmarks/gpu/knob_sweep.py selective_scan --impl triton_v5 --knob prefetch=0,1,2 \
        --knob per_thread=16,32,64 --shape seqlen=4096,dstate=16 --shape seqlen=16384,dstate=16 \
        --shape seqlen=65536,dstate=16 --shape seqlen=16384,dstate=64 ;;
    knobs_v5)   # selective_scan v5 (steps on register phases, polynomial softplus, unmasked loads) against v4
      run_phase knobs_scan_v5 python3 benchmarks/gpu/knob_sweep.py selective_scan --impl triton_v5 --knob version=4,5 --knob chunk=2,4 \
        --shape seqlen=4096,dstate=16 --shape seqlen=16384,dstate=16 --shape seqlen=65536,dstate=16 \
        --shape seqlen=4096,dstate=64 --shape seqlen=16384,dstate=64 ;;
    knobs_occupancy) # selective_scan v5: registers capped for 3-4 programs per SM, grids sized in whole waves, prefetch
      run_phase knobs_scan_occupancy python3 benchmarks/gpu/knob_sweep.py selective_scan --impl triton_v5 --knob maxnreg=0,168,128 \
        --knob target_programs=528,792,1056 --knob prefetch=0,1 --shape seqlen=16384,dstate=16 \
        --shape seqlen=65536,dstate=16 --shape seqlen=4096,dstate=16 --shape seqlen=16384,dstate=64 ;;
    knobs_n64)  # selective_scan v5 at N64 with its 2-step chunks: prefetch and grid size
      run_phase knobs_scan_n64 python3 benchmarks/gpu/knob_sweep.py selective_scan --impl triton_v5 --knob prefetch=0,1 \
        --knob target_programs=528,1056 --shape seqlen=4096,dstate=64 --shape seqlen=16384,dstate=64 ;;
    scan_versions) # the scan's versions side by side with the official kernel at issue 7's shapes
      run_phase scan_versions $SSM bench --config benchmarks/sweeps/h100_scan_versions.yaml --peaks h100-sxm --resume --csv --out "$RES/scan" ;;
    ncu_why)    # why the scan takes its time: stall reasons, pipe utilization, occupancy (ours vs official, N16 L16K)
      sections="--section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section Occupancy --section LaunchStats --section InstructionStats --section MemoryWorkloadAnalysis"
      for impl in ${IMPLS:-triton official}; do
        run_phase "ncu_why_$impl" ncu --clock-control none $sections -k regex:selective_scan --launch-skip 2 \
          --launch-count 2 python3 benchmarks/gpu/profile_once.py selective_scan --impl "$impl" \
          --shape ${WHY_SHAPE:-seqlen=16384,dstate=16} --knob "${WHY_KNOB:-}" --calls 4
      done ;;
    scan_v6)    # selective_scan v6 (`triton`): GPU checks, then its knobs against the official kernel and v5 at
      # issue 7's shapes (B1 D1536 bf16)
      run_phase scan_v6_check $SSM check selective_scan --impl triton --grid upstream --seed 2026
      run_phase scan_v6_gputests python3 -m pytest -q -m gpu -p no:cacheprovider tests/kernels/test_selective_scan.py -k "not v5"
      v6_shapes="--shape seqlen=4096,dstate=16 --shape seqlen=16384,dstate=16 --shape seqlen=65536,dstate=16 --shape seqlen=16384,dstate=64"
      run_phase knobs_scan_v6 python3 benchmarks/gpu/knob_sweep.py selective_scan --knob prefetch=1,2 \
        --knob maxnreg=128,168,0 $v6_shapes
      run_phase knobs_scan_v5_ref python3 benchmarks/gpu/knob_sweep.py selective_scan --impl triton_v5 $v6_shapes ;;
    scan_v6_knobs) # v6 (now `triton`): states in flight x steps per thread, then lanes per channel and warps per program
      v6_shapes="--shape seqlen=4096,dstate=16 --shape seqlen=16384,dstate=16 --shape seqlen=65536,dstate=16 --shape seqlen=16384,dstate=64"
      run_phase scan_check $SSM check selective_scan --grid upstream --seed 2026
      run_phase knobs_scan_v6_states python3 benchmarks/gpu/knob_sweep.py selective_scan --knob prefetch=1,2,4 \
        --knob per_thread=8,16 $v6_shapes
      run_phase knobs_scan_v6_lanes python3 benchmarks/gpu/knob_sweep.py selective_scan --knob lanes=16 \
        --knob num_warps=1,2,4 --shape seqlen=16384,dstate=16 --shape seqlen=16384,dstate=64 ;;
    conv1d_gap) # D3328 L64K channel-last: knob_sweep's 359 µs against the bench's 312 µs, in one call; then
      # knob_sweep on the bench's inputs (seed 0, its default 7) to tell inputs from harness
      run_phase conv1d_gap_sweep python3 benchmarks/gpu/knob_sweep.py causal_conv1d --shape dim=3328,seqlen=65536,channel_last=true
      run_phase conv1d_gap_bench $SSM bench causal_conv1d --impl official,triton --dim 3328 --seqlen 64k \
        --set channel_last=true --budget 0.3 --out "$RES/conv1d_gap"
      run_phase conv1d_gap_seeds python3 benchmarks/gpu/knob_sweep.py causal_conv1d --seed 0 --seed 7 --seed 1 \
        --shape dim=3328,seqlen=65536,channel_last=true ;;
    conv1d_placement) # the same shape timed after different allocation histories in one process
      run_phase conv1d_placement python3 benchmarks/gpu/placement_probe.py causal_conv1d \
        --shape dim=3328,seqlen=65536,channel_last=true
      run_phase conv1d_placement_precalls python3 benchmarks/gpu/placement_probe.py causal_conv1d --precalls \
        --shape dim=3328,seqlen=65536,channel_last=true ;;
    scan_waves) # v6 where the channels need more than one wave at 168 registers: fewer registers, one wave
      run_phase knobs_scan_v6_waves python3 benchmarks/gpu/knob_sweep.py selective_scan --knob maxnreg=128,144,168 \
        --shape dim=2048,seqlen=16384,dstate=16 --shape dim=2048,seqlen=16384,dstate=64 --shape dim=4096,seqlen=16384,dstate=16 ;;
    scan_v6_warps) # v6: one or two channels per program (no 4-warp barrier per tile)
      run_phase knobs_scan_v6_warps python3 benchmarks/gpu/knob_sweep.py selective_scan --knob num_warps=1,2 \
        --shape seqlen=16384,dstate=16 --shape seqlen=65536,dstate=16 --shape seqlen=16384,dstate=64 ;;
    ncu_targets)
      run_phase ncu_targets $SSM ncu collect config --config benchmarks/sweeps/h100_targets.yaml --out "$RES/targets"
      run_phase fidelity $SSM ncu fidelity "$RES/targets" ;;
    calibrate)
      run_phase calibrate $SSM roofline calibrate --out "$RES/h100-sxm@measured.yaml" ;;
    ncu)        # every family and decode step, all implementations, at the quick grid
      run_phase ncu $SSM ncu collect all --grid quick --out "$RES/ncu" ;;
    e2e)        # MODELS over LENGTHS: TTFT/TPOT/memory/energy, then the prefill breakdown and the 24 GiB frontier
      for m in ${MODELS:-qwen2.5-0.5b mamba2-780m falcon-h1-0.5b-base}; do
        run_phase "e2e_run_$m" $SSM e2e run "$m" --seqlen ${LENGTHS:-1k,2k,4k,8k,16k,32k} --gen ${GEN:-128} --reps 2 ${E2E_FLAGS:-} --out "$RES/e2e"
      done ;;
    e2e_breakdown)
      for m in ${MODELS:-qwen2.5-0.5b mamba2-780m falcon-h1-0.5b-base}; do
        run_phase "e2e_breakdown_$m" $SSM e2e breakdown "$m" --seqlen ${BREAKDOWN_LENGTHS:-4096,16384} --roofline-device h100-sxm --out "$RES/e2e"
      done ;;
    e2e_frontier)
      for m in ${MODELS:-qwen2.5-0.5b mamba2-780m falcon-h1-0.5b-base}; do
        run_phase "e2e_frontier_$m" $SSM e2e frontier "$m" --memory-budget ${BUDGET_MEM:-24GiB} ${FRONTIER_FLAGS:-} --out "$RES/e2e"
      done ;;
    *)
      echo "unknown phase $phase" ;;
  esac
done
ls -la "$OUT"
