#!/usr/bin/env bash
# Issue 17's nano options on one GPU, in device calls of under ten minutes each.
#   bash bench/phase2_device.sh checks   correctness on the card (kernel tests in bf16/fp16,
#                                        fused and kv_layout logits against the default path),
#                                        decode attention's tile tune for both layouts, one
#                                        profiled job at 256
#   bash bench/phase2_device.sh ab       throughput of each option against the default,
#                                        with intervals (bench/nano_ab.py)
set -uo pipefail
: "${OUT:?set OUT to the directory that comes back}"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
git log -1 --format='commit %h %cI' 2>/dev/null || true
case "${1:?checks or ab}" in
  checks)
    timeout 150 python -m pytest -q -p no:cacheprovider tests/engine/nano/test_nano_kernels.py \
      2>&1 | tail -3
    timeout 120 python -m tests.engine.nano.gpu_check_fused --out "$OUT/fused" --only logits \
      2>&1 | tail -4
    timeout 120 python -m tests.engine.nano.gpu_check --out "$OUT/kvcheck.jsonl" --skip-bench \
      2>&1 | grep -E 'kv_head|triton_vs_torch' | tail -6
    timeout 60 python bench/sample_kernel.py 2>&1 | tail -6
    timeout 150 python bench/decode_attention_tune.py --out "$OUT/tune" 2>&1 | tail -25
    timeout 150 python bench/profile_job.py --out "$OUT/profile" --max-num-seqs 256 2>&1 | tail -45
    ;;
  ab)
    timeout 560 python bench/nano_ab.py --out "$OUT/ab" --max-num-seqs "${SEQS:-64,256}" \
      --repeats "${REPEATS:-3}" --rounds "${ROUNDS:-2}" --variant nano='{}' \
      --variant fused='{"fuse_norm_linear": true}' --variant kv-head='{"kv_layout": "head"}'
    ;;
esac
