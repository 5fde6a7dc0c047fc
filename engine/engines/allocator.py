"""The device allocator between two generates of one engine process, one rule for the
adapters that run torch in this process (nano, hf)."""

from __future__ import annotations

import gc

import torch


def settle(device: torch.device) -> None:
    """Garbage of the last generate collected, and on CUDA the allocator's cached blocks
    handed back once the device is idle: every generate after it allocates alike."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
