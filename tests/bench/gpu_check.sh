#!/usr/bin/env bash
# One short device check on a CUDA machine: the cases of tests/bench/gpu_check.toml with --accel
# cuda (NAG foreach, fused and flat on mobilenet_v2, bert_tiny and ds_cnn, fp32 and bf16; 3
# warm-up and 20 measured steps, 5 checked steps; 18 agent processes) with the ceilings probe.
# Writes to $OUT:
#   gpu_check.txt   the CUDA (and CPU) ceilings, each case's fraction of its accelerator's
#                   ceilings, the correctness checks (run on the GPU, in the case's dtype) and
#                   the energy figures with their flags
#   results.tgz     the run directory (raw.jsonl, steps/cases parquet, probe.json, logs), < 16 MB
# Run from the repository root:   OUT=/some/dir bash tests/bench/gpu_check.sh
# (GPU_CHECK_ACCEL=cpu GPU_CHECK_WORKLOADS=bert_tiny runs the same script on a CPU: a dry run.)
# Needs python3 with CUDA torch, pandas, pyarrow (onnx/onnxruntime optional). tqdm is used when
# installed (a wheel in .whl/ is installed first); without it a no-op stand-in is used.
set -euo pipefail
OUT=${OUT:?set OUT to the folder that receives gpu_check.txt and results.tgz}
PY=${PYTHON:-python3}
ACCEL=${GPU_CHECK_ACCEL:-cuda}
WORKLOADS=${GPU_CHECK_WORKLOADS:-mobilenet_v2 bert_tiny ds_cnn}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

# one python for both checks (an import of torch is seconds): 4 = torch imports, sees no CUDA
torch_status=0
"$PY" -c 'import sys; import torch; sys.exit(0 if torch.cuda.is_available() else 4)' 2>/dev/null || torch_status=$?
if [ "$torch_status" != 0 ] && [ "$torch_status" != 4 ]; then
    echo "gpu_check: $PY cannot import torch; set PYTHON to a python with CUDA torch" | tee "$OUT/gpu_check.txt" >&2
    exit 3
fi
if [ "$ACCEL" = cuda ] && [ "$torch_status" = 4 ]; then
    echo "gpu_check: torch sees no CUDA device here (torch.cuda.is_available() is False);" \
         "run this on the GPU machine" | tee "$OUT/gpu_check.txt" >&2
    exit 3
fi

work=$(mktemp -d)
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --find-links .whl tqdm nvidia-ml-py >/dev/null 2>&1 || true
fi
if ! "$PY" -c 'import tqdm' 2>/dev/null; then  # progress bars only: a stand-in that draws none
    mkdir -p "$work/shim/tqdm"
    cat > "$work/shim/tqdm/__init__.py" <<'PYEOF'
class tqdm:
    def __init__(self, *args, **kwargs): pass
    def update(self, n=1): pass
    def reset(self, total=None): pass
    def close(self): pass
PYEOF
    export PYTHONPATH="$work/shim:$PYTHONPATH"
fi

"$PY" - <<'PYEOF' | tee "$OUT/gpu_env.txt"
import torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", gpu)
PYEOF
workload_args=()
for w in $WORKLOADS; do workload_args+=(--workload "$w"); done

set +e
HOME="$work/home" HARNESS_LOCK_DIR="$work/locks" timeout 450 "$PY" -m harness bench \
    --device local --suite tests/bench/gpu_check.toml --accel "$ACCEL" \
    "${workload_args[@]}" --processes 1 --isolate --no-report \
    --out "$work/results" --run-id cuda-smoke > "$OUT/bench.log" 2>&1
status=$?
set -e
echo "harness bench exit status: $status" >> "$OUT/bench.log"

run="$work/results/cuda-smoke"
"$PY" tests/bench/gpu_summary.py "$run" > "$OUT/gpu_check.txt" 2>&1 || true
{
    echo "harness bench exit status: $status"
    # without plotly the report (and the bench's answer lines) cannot be built: exit 1 with
    # the results stored; every other error line matters
    grep -E "^error:|Traceback|failed" "$OUT/bench.log" || true
} >> "$OUT/gpu_check.txt"
tar czf "$OUT/results.tgz" -C "$work/results" cuda-smoke
if [ "$(stat -c %s "$OUT/results.tgz")" -gt 15000000 ]; then  # keep the tables, drop raw lines
    tar czf "$OUT/results.tgz" -C "$work/results" --exclude raw.jsonl cuda-smoke
fi
cat "$OUT/gpu_check.txt"
exit "$status"
