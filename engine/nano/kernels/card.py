"""The CUDA card a kernel launches on: what its launch configuration depends on.

A Card holds the properties the kernels' choosers read (compute capability, SM count,
shared memory per SM and per program, threads and registers per SM); `Card.of(device)`
reads them from the device, CARDS names the cards nano is built for (for tests and for
compiling ahead of time). No torch or triton import: torch is imported only to read a
device.
"""

from __future__ import annotations

from dataclasses import dataclass

# The CUDA runtime keeps this much of a program's shared memory for itself from sm_80 on.
_RESERVED_SMEM_SM80 = 1024
_REG_ALLOC_UNIT = 256  # registers are given to a warp in units of this many


@dataclass(frozen=True)
class Card:
    name: str
    arch: int  # compute capability as major * 10 + minor: 86 for 8.6
    num_sms: int
    smem_per_sm: int  # bytes of shared memory one SM holds
    smem_per_block: int  # the most one program may ask for (the opt-in limit)
    max_threads_per_sm: int
    regs_per_sm: int = 65536

    @property
    def has_bf16(self) -> bool:
        return self.arch >= 80

    @property
    def smem_reserved_per_block(self) -> int:
        return _RESERVED_SMEM_SM80 if self.arch >= 80 else 0

    def programs_per_sm(self, smem: int, num_warps: int) -> int:
        """Programs of `num_warps` warps and `smem` bytes of shared memory each that an SM
        holds at once, as its shared memory and threads allow; 0 when one does not fit."""
        if smem > self.smem_per_block:
            return 0
        by_smem = self.smem_per_sm // (smem + self.smem_reserved_per_block)
        return min(by_smem, self.max_threads_per_sm // (32 * num_warps))

    def programs_by_registers(self, regs_per_thread: int, num_warps: int) -> int:
        """Programs an SM's register file holds at `regs_per_thread` (from the compiler)."""
        per_warp = -(-regs_per_thread * 32 // _REG_ALLOC_UNIT) * _REG_ALLOC_UNIT
        return self.regs_per_sm // max(per_warp, 1) // num_warps

    @classmethod
    def of(cls, device) -> Card:
        """The card of a CUDA device (torch.device, index or name)."""
        import torch

        return _card_of(torch.cuda.get_device_properties(device))


def _card_of(p) -> Card:
    arch = p.major * 10 + p.minor
    return Card(
        name=p.name, arch=arch, num_sms=p.multi_processor_count,
        smem_per_sm=p.shared_memory_per_multiprocessor,
        # Older torch builds lack the opt-in limit; the per-SM figure less the runtime's
        # reserve is what the opt-in limit is on every card from sm_80 on.
        smem_per_block=getattr(p, "shared_memory_per_block_optin", None)
        or p.shared_memory_per_multiprocessor
        - (_RESERVED_SMEM_SM80 if arch >= 80 else 0),
        max_threads_per_sm=p.max_threads_per_multi_processor,
        regs_per_sm=getattr(p, "regs_per_multiprocessor", 65536),
    )


# The cards nano is built for, as cudaGetDeviceProperties reports them.
CARDS: dict[str, Card] = {c.name: c for c in (
    Card("A100", 80, 108, 167936, 166912, 2048),
    Card("RTX 3090", 86, 82, 102400, 101376, 1536),
    Card("RTX 4090", 89, 128, 102400, 101376, 1536),
    Card("H100 SXM", 90, 132, 233472, 232448, 2048),
    Card("H200", 90, 132, 233472, 232448, 2048),
)}
