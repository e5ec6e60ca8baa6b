#!/usr/bin/env bash
# On a CUDA machine: each mode served with the sd15 preset in float16 answers one request through
# the CLI, then `make bench`'s GPU section runs. Writes results (and the images) to $OUT if set.
# Where the machine cannot reach PyPI, wheels in .whl/ are installed to /tmp/site first.
#   bench/gpu_check.sh --compile        only the --compile check (bench/compile_check.py), at most 6 minutes:
#                                       in-process diffusers, the step engine uncompiled and compiled,
#                                       1-16 clients, graphs and warm-up; BENCH_MODEL=/local/sd15-folder for
#                                       real weights (default: the sd15 preset, random weights)
#   bench/gpu_check.sh --compile --dry  the same on the CPU with the tiny model (checks the script runs)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ "${1:-}" = --compile ]; then
  shift
  [ "${1:-}" = --dry ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  # The compile cache starts empty on a fresh machine: compiling is part of what this measures.
  timeout "${BENCH_TIMEOUT:-350}" "$PY" -m bench.compile_check "$@"
  [ "$OUT" = bench/results ] || cp "$(ls -t bench/results/*.md | head -1)" "$OUT/"
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, diffusers, transformers, grpc; print('torch', torch.__version__, 'diffusers', diffusers.__version__,
'transformers', transformers.__version__, 'grpcio', grpc.__version__)"

"$PY" -c "from PIL import Image; Image.radial_gradient('L').resize((512, 512)).convert('RGB').save('/tmp/in.png');
m = Image.new('L', (512, 512), 0); m.paste(255, (128, 128, 384, 384)); m.save('/tmp/mask.png')"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
port=50151
for mode in txt2img img2img inpaint; do
  "$PY" -m services.$mode --model sd15 --device cuda:0 --port $port --metrics-port -1 --log-level WARNING &
  pids+=($!)
  port=$((port + 1))
done
port=50151
for mode in txt2img img2img inpaint; do
  for _ in $(seq 120); do "$PY" -m services.client health $mode --addr 127.0.0.1:$port >/dev/null && break; sleep 1; done
  extra=()
  [ $mode != txt2img ] && extra+=(--image /tmp/in.png)
  [ $mode = inpaint ] && extra+=(--mask /tmp/mask.png)
  start=$(date +%s%N)
  "$PY" -m services.client $mode --addr 127.0.0.1:$port --prompt "a red fox" --steps 20 --seed 7 --quiet \
    "${extra[@]}" --out "$OUT/gpu-$mode.png"
  echo "$mode: served on the GPU in $(( ($(date +%s%N) - start) / 1000000 )) ms (first request)"
  port=$((port + 1))
done
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
"$PY" -m bench.gpu_sdxl_check
[ "${GPU_BENCH:-1}" = 0 ] && exit 0
"$PY" -m bench.run --sections gpu
[ "$OUT" = bench/results ] || cp "$(ls -t bench/results/*.md | head -1)" "$OUT/"
