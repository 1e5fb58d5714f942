#!/usr/bin/env bash
# Everything the GPU goals ask for, in one command on a machine with a GPU (about 8 minutes on one H200):
#   1. the DIP engine at 512² (N = 1, 4, 8; vmap / map / loop; precision highest / default; the anonymization
#      step against the bare step) — the aggregate it/s target is ≥ 150;
#   2. the PRNU core at 512² (batches 1, 8, 32);
#   3. the whole-photo path: the DIP step of its 128² tiles at N = 8, 32, 64 (the slots of 'photo_gpu'), and the
#      cost per megapixel of cold tiles against the default recipe on 2 Dresden photos (scripts/benchmark_cost.py);
#   4. the quality benchmark on 2 Dresden photos at 512² with the CPU default and the paper's DIP.
# All figures go, as JSON lines / JSON, into $GPU_CHECK_DIR (default runs/gpu_check); each part has its own time
# limit so one slow part cannot eat the others' time. GPU_CHECK_SMOKE=1 runs tiny sizes (to test the script on a
# CPU). Usage: bash scripts/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT="${GPU_CHECK_DIR:-runs/gpu_check}"
mkdir -p "$OUT"
if [ "${GPU_CHECK_SMOKE:-0}" = "1" ]; then
  SIZE=32; CONFIG=tiny; PRNU_SIZE=64; QUALITY=(--crop=128 --photos=2 --set=dippas.dip.max_steps=20,detector.scope=none)
  TILE_CONFIG=tiny; TILE=32; TILE_BATCH=2; COST=(--photos=1 --variants=combined --set=dip.max_steps=3)
else
  SIZE=512; CONFIG=paper; PRNU_SIZE=512; QUALITY=(--crop=512 --photos=2 --set=detector.scope=none)
  TILE_CONFIG="paper,model.input_depth=32,model.sigmoid_grad_floor=0.05"
  TILE=128; TILE_BATCH=8,32,64; COST=(--photos=2 --variants=cold,combined)
fi
python3 -c "import jax; print('backend', jax.default_backend(), jax.devices())" | tee "$OUT/backend.txt"
run() {  # run <seconds> <name> <command...>
  local limit=$1 name=$2; shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; echo "exit $? for $name" | tee -a "$OUT/status.txt"
  tail -n 30 "$OUT/$name.log"
}
run 150 dip_vmap python3 scripts/benchmark_dip.py --config=$CONFIG --sizes=$SIZE --batch=1,4,8 --formulations=vmap \
  --precisions=highest,default --hook=none,assembly --steps=10 --chunks=2 --out="$OUT/dip.jsonl"
run 60 dip_map_loop python3 scripts/benchmark_dip.py --config=$CONFIG --sizes=$SIZE --batch=4 --formulations=map,loop \
  --precisions=highest --steps=10 --chunks=2 --out="$OUT/dip.jsonl"
run 40 prnu python3 scripts/benchmark_prnu.py --size=$PRNU_SIZE --batches=1,8,32 --out="$OUT/prnu.jsonl"
run 60 dip_tiles python3 scripts/benchmark_dip.py --config="$TILE_CONFIG" --sizes=$TILE --batch=$TILE_BATCH \
  --formulations=vmap --precisions=highest,default --hook=assembly --kept=photo --steps=10 --chunks=2 --out="$OUT/dip_tiles.jsonl"
run 120 cost python3 scripts/benchmark_cost.py "${COST[@]}" --workdir="$OUT/cost"
run 60 quality python3 scripts/benchmark_quality.py "${QUALITY[@]}" --variants=dippas,dippas_paper_cold \
  --workdir="$OUT/quality"
echo "figures in $OUT: dip.jsonl, prnu.jsonl, dip_tiles.jsonl, cost/cost.json, quality/quality.json; logs *.log;" \
  "exit codes status.txt"
