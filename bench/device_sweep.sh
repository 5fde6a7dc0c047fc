#!/usr/bin/env bash
# A sweep file on the lent GPU: `orchestrate sweep $SWEEP` (default sweeps/phase1.yaml) with
# the local executor (Ray on this machine, one slot per GPU), then its status, results and
# export. Everything lands in $OUT: $NAME.db (SQLite), ${NAME}_results.txt, $NAME.csv, logs.
#
# Run from anywhere once the carried packages are on PYTHONPATH (vLLM 0.26.0 from the
# vllm-on-device kit; ray, sqlalchemy, alembic from device-carry), e.g.
#     export PYTHONPATH=/tmp/site:/tmp/site2 && bash bench/device_sweep.sh
#     SWEEP=sweeps/phase2.yaml NAME=phase2 bash bench/device_sweep.sh
# The project itself is not pip-installed: `python3 -m orchestrator` is `orchestrate`.
# Resumable across calls and sessions: the database starts from bench/results/$NAME/$NAME.db
# when $OUT has none (commit the one that comes back there), and only the jobs not yet
# succeeded run. The sweep gets SIGINT after $BUDGET_S seconds (default 540, so the table
# still comes back inside one 10-minute call); it records what finished.
# REUSE=repeats runs the same file as its own sweep, "$NAME" (say phase2-reuse), with
# `reuse: repeats` for every variant, optionally only the variants in $VARIANTS: the
# fresh-process and the shared-engine figures of one sweep file side by side (issue 18).
set -uo pipefail
: "${OUT:?set OUT to the directory that comes back}"
BUDGET_S=${BUDGET_S:-540}
SWEEP=${SWEEP:-sweeps/phase1.yaml}  # another sweep file (and its NAME) for a smoke test
NAME=${NAME:-phase1}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
export HF_HUB_OFFLINE=1 VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0}
# Ray would give its workers OMP_NUM_THREADS=1; set it as a job outside Ray sees it.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
export COLUMNS=${COLUMNS:-220}  # rich tables are 80 wide where stdout is not a terminal
DB="sqlite:///$OUT/$NAME.db"
if [ ! -e "$OUT/$NAME.db" ] && [ -e "bench/results/$NAME/$NAME.db" ]; then
    cp "bench/results/$NAME/$NAME.db" "$OUT/$NAME.db"
fi
T0=$SECONDS
if [ -n "${REUSE:-}" ]; then
    python3 - "$SWEEP" "$NAME" "$REUSE" "$OUT/$NAME.yaml" ${VARIANTS:-} <<'EOF' || exit 3
import sys, yaml
src, name, reuse, dst, *keep = sys.argv[1:]
spec = yaml.safe_load(open(src))
spec.update(name=name, reuse=reuse)
if keep:
    spec["variants"] = {k: v for k, v in spec["variants"].items() if k in keep}
    spec["matrix"]["variant"] = [v for v in spec["matrix"]["variant"] if v in keep]
    spec["exclude"] = [e for e in spec.get("exclude", []) if e.get("variant") in keep]
yaml.safe_dump(spec, open(dst, "w"), sort_keys=False)
EOF
    SWEEP="$OUT/$NAME.yaml"
fi

VLLM=$(grep -q "kind: vllm" "$SWEEP" && echo vllm)
python3 - $VLLM <<'EOF' || exit 3
import importlib.util, sys
need = (*sys.argv[1:], "ray", "sqlalchemy", "alembic", "pydantic", "typer", "rich", "yaml", "pandas",
        "pynvml", "torch", "transformers", "triton", "safetensors")
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"not importable here (carry them, put them on PYTHONPATH): {' '.join(missing)}")
EOF
nvidia-smi --query-gpu=index,name,uuid,memory.used,memory.total,driver_version,clocks.sm,clocks.mem,temperature.gpu \
    --format=csv | tee "$OUT/gpu_before.csv"

timeout --signal=INT --kill-after=30 "$BUDGET_S" \
    python3 -m orchestrator sweep "$SWEEP" --db "$DB" 2>&1 | tee -a "$OUT/${NAME}_sweep.log"
echo "sweep exit ${PIPESTATUS[0]} after $((SECONDS - T0)) s"

python3 -m orchestrator status "$NAME" --db "$DB" 2>&1 | tee "$OUT/${NAME}_status.txt"
python3 -m orchestrator results "$NAME" --db "$DB" 2>&1 | tee "$OUT/${NAME}_results.txt"
python3 -m orchestrator export "$NAME" --db "$DB" -o "$OUT/$NAME.csv"
nvidia-smi --query-gpu=memory.used,temperature.gpu --format=csv | tee "$OUT/gpu_after.csv"
echo "total $((SECONDS - T0)) s"
