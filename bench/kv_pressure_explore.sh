#!/usr/bin/env bash
# nano under KV-cache pressure, alone (no vLLM: nothing to carry): the standard workload on a
# random Qwen2-1.5B at max_num_seqs 256, KV budgets of 100k and 200k tokens against plenty,
# with the scheduler's and the cache's knobs: async scheduling, admission lookahead, block
# size. Each run's BenchResult (preemptions, prefill tokens, decode steps) lands in $OUT.
set -uo pipefail
: "${OUT:?set OUT to the directory that comes back}"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
run() { python3 bench/engine_vs_vllm.py --engines nano --max-num-seqs 256 --timeout 120 "$@" \
          2>&1 | grep -v '^\s*$' | grep -v '^checkpoint'; }
run --out "$OUT/plenty" --kv-cache-tokens auto --budget-s 70 \
    --nano-options '{}' --nano-options '{"block_size":64}'
run --out "$OUT/100k" --kv-cache-tokens 100000 --budget-s 250 \
    --nano-options '{}' --nano-options '{"async_scheduling":false}' \
    --nano-options '{"admission_lookahead":64}' --nano-options '{"admission_lookahead":256}' \
    --nano-options '{"block_size":64}' --nano-options '{"block_size":64,"admission_lookahead":64}' \
    --nano-options '{"block_size":32,"admission_lookahead":64}'
run --out "$OUT/200k" --kv-cache-tokens 200000 --budget-s 70 \
    --nano-options '{}' --nano-options '{"block_size":64,"admission_lookahead":64}'
