#!/usr/bin/env bash
# nano against vLLM under a smaller card's KV budget, in one device call: the standard
# workload on a random Qwen2-1.5B, KV budgets from plenty down to 100k tokens at
# max_num_seqs 256, plenty and 100k at 64 (the standard workload's 64 sequences want at
# most 131k tokens). vLLM 0.26 must be importable (PYTHONPATH=/tmp/site, the
# vllm-on-device kit). NANO_OPTIONS: the nano variants, one JSON object per line.
set -uo pipefail
: "${OUT:?set OUT to the directory that comes back}"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_USE_FLASHINFER_SAMPLER=0
NANO_OPTIONS=${NANO_OPTIONS:-'{}'}
nano=()
while IFS= read -r o; do [ -n "$o" ] && nano+=(--nano-options "$o"); done <<< "$NANO_OPTIONS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
run() { python3 bench/engine_vs_vllm.py --engines vllm,nano --no-warm-rerun --timeout 150 \
          "${nano[@]}" "$@" 2>&1 | grep -v '^\s*$'; }
run --out "$OUT/256" --max-num-seqs 256 --kv-cache-tokens "${KV_256:-auto,200000,100000}" \
    --budget-s "${BUDGET_256:-300}"
run --out "$OUT/64" --max-num-seqs 64 --kv-cache-tokens "${KV_64:-auto,100000}" \
    --budget-s "${BUDGET_64:-230}"
