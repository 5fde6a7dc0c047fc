"""ModelRunner: the model on its device, the paged KV cache, and one forward step.

KV-cache size: on CUDA, a profiling pass runs the largest prefill a step can schedule (and
samples for max_num_seqs rows) over a temporary cache; the blocks then take what is left of
gpu_memory_utilization * total memory (card_memory_gib, when given, as the total) after the
weights, that pass's activation peak and whatever other processes hold. kv_cache_tokens,
when given, fixes the cache instead, checked against that on CUDA. On CPU,
gpu_memory_utilization and card_memory_gib have no meaning: the cache takes
kv_cache_tokens, or else cpu_kv_cache_bytes, at most a quarter of the RAM available at
start, and never more than max_num_seqs sequences of max_model_len need.

Decode steps on CUDA replay CUDA graphs captured for batch-size buckets up to max_num_seqs
(unless enforce_eager). So do prefill steps of up to PREFILL_GRAPH_SEQS sequences and
prefill_graph_tokens tokens (Triton attention only: the torch path reads lengths on the
host): the sequences admitted one or two at a time in the middle of a run. Run eagerly, such
a step's ~170 kernel launches cost about 11 ms of host time on an H200, several times its
GPU time, while every decoding sequence waits. Larger prefill steps run eagerly. The graphs'
memory pool is taken after the KV cache, from the headroom the profiling pass measured.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

from engine.errors import BadInput
from engine.memory_budget import GIB, card_bytes
from engine.nano.config import EngineConfig, ModelConfig
from engine.nano.kv_layout import block_shape, blocks_view
from engine.nano.layers.attention import AttentionMetadata
from engine.nano.layers.sampler import Sampler
from engine.nano.loader import load_weights
from engine.nano.models import model_class
from engine.nano.scheduler import Batch
from engine.nano.sequence import PLACEHOLDER, Sequence


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def available_ram_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


PREFILL_GRAPH_SEQS = 8


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _smallest_at_least(sizes, n: int) -> int | None:
    """The smallest graph size that holds a step of n (batch size or tokens), if any."""
    return min((s for s in sizes if s >= n), default=None)


class StepTokens:
    """One step's sampled tokens: on the device (the next step's input) and on their way
    to the host, which reads them with tolist() once the step is done."""

    def __init__(self, tokens: torch.Tensor, rows: dict[int, int], is_cuda: bool):
        self.on_device = tokens  # the tensor the next decode step reads its inputs from
        self.rows = rows  # seq_id -> row of tokens
        self.event = None
        if is_cuda and tokens.is_cuda:
            self.on_host = torch.empty(tokens.shape, dtype=tokens.dtype, pin_memory=True)
            self.on_host.copy_(tokens, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.on_host = tokens

    def tolist(self) -> list[int]:
        if self.event is not None:
            self.event.synchronize()
        return self.on_host.tolist()


BLOCK_SIZE = 256  # tokens per KV-cache block where the cache holds every sequence
TIGHT_BLOCK_SIZE = 64  # where it cannot


class ModelRunner:
    def __init__(self, cfg: EngineConfig, mcfg: ModelConfig, max_model_len: int):
        self.cfg = cfg
        self.mcfg = mcfg
        self.max_model_len = max_model_len
        self.device = torch.device(cfg.device)
        self.is_cuda = self.device.type == "cuda"
        self.dtype = getattr(torch, cfg.dtype)
        self.block_size = cfg.block_size or BLOCK_SIZE  # 0: may shrink once the cache is sized
        self.backend = cfg.attention_backend
        self.timings: dict[str, float] = {"load_s": 0.0, "profile_s": 0.0, "capture_s": 0.0}
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}  # decode, by batch size
        self.prefill_graphs: dict[int, torch.cuda.CUDAGraph] = {}  # by token count
        self.sampler = Sampler(self.backend == "triton" and self.is_cuda, cfg.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.kernels = self._choose_kernels() if self.backend == "triton" else None

        t = time.perf_counter()
        with torch.device(self.device), _default_dtype(self.dtype):
            self.model = model_class(mcfg.model_type)(
                mcfg, max_model_len, self.backend, triton=self.backend == "triton"
            )
        self.model.eval()
        for attn in self.model.attention_layers():
            attn.kernels = self.kernels
        load_weights(self.model, cfg.model_dir)
        if cfg.fuse_norm_linear:
            self.model.fold_norm_weights()
        self._sync()
        self.timings["load_s"] = time.perf_counter() - t

        t = time.perf_counter()
        self.num_blocks = self._size_kv_cache()
        self.kv_cache = self._new_cache(self.num_blocks)
        self._bind_cache(self.kv_cache)
        self._sync()
        self.timings["profile_s"] = time.perf_counter() - t

        if self.is_cuda and not cfg.enforce_eager:
            t = time.perf_counter()
            self._capture_graphs()
            self.timings["capture_s"] = time.perf_counter() - t

    # -- memory -------------------------------------------------------------------------

    @property
    def block_bytes(self) -> int:
        """A block of K and V in every layer, whatever the kv_layout."""
        m = self.mcfg
        return (2 * m.num_hidden_layers * self.block_size * m.num_key_value_heads * m.head_dim
                * self.dtype.itemsize)

    def _new_cache(self, num_blocks: int) -> torch.Tensor:
        """K and V of every layer, [2, layers, num_blocks, *block_shape] (kv_layout.py)."""
        m = self.mcfg
        block = block_shape(self.cfg.kv_layout, self.block_size, m.num_key_value_heads,
                            m.head_dim)
        return torch.zeros(2, m.num_hidden_layers, num_blocks, *block, dtype=self.dtype,
                           device=self.device)

    def _bind_cache(self, cache: torch.Tensor) -> None:
        layout = self.cfg.kv_layout
        for i, attn in enumerate(self.model.attention_layers()):
            attn.k_cache = blocks_view(cache[0, i], layout)
            attn.v_cache = blocks_view(cache[1, i], layout)

    def _sync(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def _size_kv_cache(self) -> int:
        """The cache's blocks; with block_size 0, its block size too (BLOCK_SIZE, or
        TIGHT_BLOCK_SIZE where it cannot hold max_num_seqs sequences of max_model_len)."""
        tokens = self._kv_tokens()
        if not self.cfg.block_size and tokens < self.cfg.max_num_seqs * self.max_model_len:
            self.block_size = TIGHT_BLOCK_SIZE
        return max(1, tokens // self.block_size)

    def _kv_tokens(self) -> int:
        asked = self.cfg.kv_cache_tokens
        if not self.is_cuda:
            if asked is not None:
                return asked
            budget = min(self.cfg.cpu_kv_cache_bytes, available_ram_bytes() // 4)
            cap = self.cfg.max_num_seqs * _cdiv(self.max_model_len, self.block_size)
            return min(budget // self.block_bytes, cap) * self.block_size
        fits = self._profile() * self.block_size
        if asked is None:
            return fits
        if asked > fits:
            raise BadInput(f"kv_cache_tokens {asked:,} does not fit: {fits:,} tokens do "
                           f"({self._budget_words()})")
        return asked

    def _budget_words(self) -> str:
        card = self.cfg.card_memory_gib
        return (f"gpu_memory_utilization {self.cfg.gpu_memory_utilization}"
                + (f" of card_memory_gib {card:g}" if card is not None else ""))

    @torch.inference_mode()
    def _profile(self) -> int:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        budget = self.cfg.max_num_batched_tokens
        n_seqs = max(1, min(self.cfg.max_num_seqs, budget // self.max_model_len))
        seq_len = min(self.max_model_len, budget // n_seqs)
        blocks_per_seq = _cdiv(seq_len, self.block_size)
        m = self.mcfg
        tmp = self._new_cache(n_seqs * blocks_per_seq)
        self._bind_cache(tmp)
        tables = [list(range(i * blocks_per_seq, (i + 1) * blocks_per_seq)) for i in range(n_seqs)]
        ids = torch.zeros(n_seqs * seq_len, dtype=torch.long, device=self.device)
        pos = torch.arange(seq_len, device=self.device).repeat(n_seqs)
        slots = torch.tensor(
            [t[p // self.block_size] * self.block_size + p % self.block_size
             for t in tables for p in range(seq_len)], device=self.device,
        )
        cu = [i * seq_len for i in range(n_seqs + 1)]
        meta = AttentionMetadata(
            True, slots, torch.tensor(tables, dtype=torch.int32, device=self.device),
            torch.full((n_seqs,), seq_len, dtype=torch.int32, device=self.device),
            torch.tensor(cu, dtype=torch.int32, device=self.device), seq_len,
            cu_seqlens_q_host=cu, context_lens_host=[seq_len] * n_seqs,
        )
        hidden = self.model(ids, pos, meta)
        del hidden
        # The largest sampling a decode step does, top-k/top-p included.
        rows = self.cfg.max_num_seqs
        logits = self.model.compute_logits(
            torch.zeros(rows, m.hidden_size, dtype=self.dtype, device=self.device)
        )
        ones = torch.ones(rows, device=self.device)
        self.sampler(logits, ones, torch.ones(rows, dtype=torch.long, device=self.device),
                     ones * 0.9, self.generator)
        del logits
        torch.cuda.synchronize(self.device)
        peak = torch.cuda.max_memory_allocated(self.device)
        tmp_bytes = tmp.numel() * tmp.element_size()
        del tmp
        self._bind_cache(self._new_cache(0))
        torch.cuda.empty_cache()
        current = torch.cuda.memory_allocated(self.device)
        free, total = torch.cuda.mem_get_info(self.device)
        used = total - free  # weights, this process's cached blocks, other processes
        total = card_bytes(self.cfg.card_memory_gib, total)
        activations = max(0, peak - tmp_bytes - current)
        available = int(total * self.cfg.gpu_memory_utilization) - used - activations
        n = available // self.block_bytes
        if n < 1:
            raise RuntimeError(
                f"no memory left for the KV cache: {used / GIB:.2f} GiB in use, "
                f"{activations / GIB:.2f} GiB activation peak, {self._budget_words()} "
                f"({total / GIB:.2f} GiB)"
            )
        return n

    def reseed(self) -> None:
        """The sampler's random draws from the start of the engine's seed again."""
        self.sampler.seeds.seed(self.cfg.seed)
        self.generator.manual_seed(self.cfg.seed)

    def peak_memory_bytes(self) -> int | None:
        if self.is_cuda:
            return torch.cuda.max_memory_allocated(self.device)
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # -- one step -----------------------------------------------------------------------

    def _tensor(self, data, dtype: torch.dtype) -> torch.Tensor:
        t = torch.tensor(data, dtype=dtype, pin_memory=self.is_cuda)
        return t.to(self.device, non_blocking=True)

    def _slots(self, seq: Sequence, start: int, end: int, out: list[int]) -> None:
        bs, p = self.block_size, start
        while p < end:
            off = p % bs
            take = min(bs - off, end - p)
            base = seq.block_table[p // bs] * bs + off
            out.extend(range(base, base + take))
            p += take

    def _block_tables(self, seqs: list[Sequence]) -> list[list[int]]:
        width = max(len(s.block_table) for s in seqs)
        return [s.block_table + [0] * (width - len(s.block_table)) for s in seqs]

    def _prepare_prefill(self, batch: Batch):
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        cu = [0]
        ctx: list[int] = []
        sample_rows: list[int] = []
        for i, (seq, n) in enumerate(zip(batch.seqs, batch.num_new_tokens, strict=True)):
            start, end = seq.num_computed_tokens, seq.num_computed_tokens + n
            ids.extend(seq.token_ids[start:end])
            positions.extend(range(start, end))
            self._slots(seq, start, end, slots)
            cu.append(cu[-1] + n)
            ctx.append(end)
            if batch.samples(i):
                sample_rows.append(cu[-1] - 1)
        meta = AttentionMetadata(
            True, self._tensor(slots, torch.long),
            self._tensor(self._block_tables(batch.seqs), torch.int32),
            self._tensor(ctx, torch.int32), self._tensor(cu, torch.int32),
            max(batch.num_new_tokens), cu_seqlens_q_host=cu, context_lens_host=ctx,
        )
        return self._tensor(ids, torch.long), self._tensor(positions, torch.long), meta, sample_rows

    def _choose_kernels(self):
        """The Triton kernels' launch configurations for this card (kernels/choose.py). The
        interpreter on CPU has no card: it takes the H200's, where they were measured."""
        from engine.nano.kernels.card import CARDS, Card
        from engine.nano.kernels.choose import choose

        card = Card.of(self.device) if self.is_cuda else CARDS["H200"]
        return choose(card, self.mcfg, self.dtype.itemsize, self.cfg.kv_layout)

    def num_splits(self, batch: int, max_context: int) -> int:
        if self.kernels is None:
            return 1
        return self.kernels.decode.num_splits(batch, self.mcfg.num_key_value_heads, max_context)

    def _decode_inputs(
        self, seqs: list[Sequence], prev: StepTokens | None
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """A decode step's inputs in two host-to-device copies: int64 [4, B] (token ids,
        positions, cache slots, and for a token not sampled yet its row in the previous
        step, else -1) and int32 [B, 1 + width] (context length, then the block table).
        Built as flat lists because this runs on the host every step, between two GPU
        steps: per-row lists and a nested torch.tensor cost a millisecond at B=256."""
        bs = self.block_size
        width = max(len(s.block_table) for s in seqs)
        pad = [0] * width
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        src: list[int] = []
        rows: list[int] = []
        prev_rows = prev.rows if prev is not None else {}
        for s in seqs:
            n = len(s.token_ids)
            table = s.block_table
            tok = s.token_ids[-1]
            ids.append(tok)
            src.append(prev_rows[s.seq_id] if tok == PLACEHOLDER else -1)
            positions.append(n - 1)
            slots.append(table[(n - 1) // bs] * bs + (n - 1) % bs)
            rows.append(n)
            rows.extend(table)
            rows.extend(pad[: width - len(table)])
        pending = any(i >= 0 for i in src)
        ids.extend(positions)
        ids.extend(slots)
        ids.extend(src)
        b = len(seqs)
        return (self._tensor(ids, torch.long).view(4, b),
                self._tensor(rows, torch.int32).view(b, 1 + width), pending)

    def _run_decode(self, seqs: list[Sequence], prev: StepTokens | None) -> torch.Tensor:
        longs, ints, pending = self._decode_inputs(seqs, prev)
        ids = longs[0]
        if pending:  # tokens the previous step sampled, still on the device
            src = longs[3]
            ids = torch.where(src >= 0, prev.on_device[src.clamp(min=0)].to(ids.dtype), ids)
        b = len(seqs)
        bucket = _smallest_at_least(self.graphs, b)
        if bucket is None:
            ctx = ints[:, 0].contiguous()
            meta = AttentionMetadata(
                False, longs[2], ints[:, 1:].contiguous(), ctx,
                num_splits=self.num_splits(b, max(len(s) for s in seqs)),
            )
            return self.model(ids, longs[1], meta)
        g = self.graph_inputs
        g["ids"][:b] = ids
        g["positions"][:b] = longs[1]
        g["slots"][b:bucket].fill_(-1)
        g["slots"][:b] = longs[2]
        g["ctx"][b:bucket].zero_()
        g["ctx"][:b] = ints[:, 0]
        g["tables"][:b, : ints.shape[1] - 1] = ints[:, 1:]
        self.graphs[bucket].replay()
        return g["out"][:b]

    def _run_prefill(self, ids: torch.Tensor, positions: torch.Tensor,
                     meta: AttentionMetadata) -> torch.Tensor:
        t, n = ids.numel(), len(meta.cu_seqlens_q_host) - 1
        bucket = _smallest_at_least(self.prefill_graphs, t)
        if bucket is None or n > PREFILL_GRAPH_SEQS:
            return self.model(ids, positions, meta)
        # Padding: tokens without a cache slot, sequences of no new tokens (cu repeats t).
        p = self.prefill_inputs
        p["ids"][:t] = ids
        p["positions"][:t] = positions
        p["slots"][t:bucket].fill_(-1)
        p["slots"][:t] = meta.slot_mapping
        p["cu"][n + 1:].fill_(t)
        p["cu"][: n + 1] = meta.cu_seqlens_q
        p["ctx"][:n] = meta.context_lens
        p["tables"][:n, : meta.block_tables.shape[1]] = meta.block_tables
        self.prefill_graphs[bucket].replay()
        return p["out"][:t]

    def replays_graph(self, batch: Batch) -> bool:
        """Whether launch() runs this step as a CUDA graph's replay."""
        if not batch.is_prefill:
            return _smallest_at_least(self.graphs, len(batch.seqs)) is not None
        return (_smallest_at_least(self.prefill_graphs, batch.num_tokens) is not None
                and len(batch.seqs) <= PREFILL_GRAPH_SEQS)

    @torch.inference_mode()
    def launch(self, batch: Batch, prev: StepTokens | None = None) -> StepTokens:
        """Queue one forward step and its sampling on the device and return at once. A
        decode step may follow a step whose tokens the host has not read yet (`prev`): the
        sequences' PLACEHOLDER tokens are taken from it on the device."""
        if batch.is_prefill:
            ids, positions, meta, rows = self._prepare_prefill(batch)
            hidden = self._run_prefill(ids, positions, meta)
            if not rows:
                return StepTokens(torch.empty(0, dtype=torch.long), {}, self.is_cuda)
            hidden = hidden[self._tensor(rows, torch.long)]
            seqs = [s for i, s in enumerate(batch.seqs) if batch.samples(i)]
        else:
            hidden = self._run_decode(batch.seqs, prev)
            seqs = batch.seqs
        logits = self.model.compute_logits(hidden)
        params = [s.params for s in seqs]
        temps = self._tensor([p.temperature for p in params], torch.float32)
        top_ks = top_ps = None
        if any(p.top_k for p in params):
            top_ks = self._tensor([p.top_k for p in params], torch.long)
        if any(p.top_p < 1 for p in params):
            top_ps = self._tensor([p.top_p for p in params], torch.float32)
        tokens = self.sampler(logits, temps, top_ks, top_ps, self.generator,
                              all_greedy=all(p.temperature == 0 for p in params))
        return StepTokens(tokens, {s.seq_id: i for i, s in enumerate(seqs)}, self.is_cuda)

    # -- CUDA graphs --------------------------------------------------------------------

    def graph_buckets(self) -> list[int]:
        n = self.cfg.max_num_seqs
        buckets = [b for b in (1, 2, 4, 8) if b < n] + list(range(16, n, 16))
        return buckets + [n]

    def prefill_graph_buckets(self) -> list[int]:
        """64, 128, then powers of two and the halves between them: a step pads its tokens
        to the next size, by a third at most from 256 on."""
        cap = min(self.cfg.prefill_graph_tokens, self.cfg.max_num_batched_tokens)
        if self.backend != "triton" or cap < 1:
            return []
        sizes, p = [], 64
        while p < cap:
            sizes += [p] if p < 256 else [p, p * 3 // 2]
            p *= 2
        return [t for t in sizes if t < cap] + [cap]

    @staticmethod
    def _capture_one(fn, pool):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool):
            fn()
        return graph

    @torch.inference_mode()
    def _capture_graphs(self, capture=None) -> None:
        """Capture the prefill forward for each token-count bucket, then the decode forward
        for each batch-size bucket, largest first, all sharing one memory pool. A capture
        follows an eager run of the same step wherever that run may compile a kernel.
        `capture(fn, pool) -> graph with replay()` defaults to CUDA graphs; a test can pass
        one that simply calls fn, to check the static-buffer paths on CPU."""
        capture = capture or self._capture_one
        n = self.cfg.max_num_seqs
        width = _cdiv(self.max_model_len, self.block_size)
        dev = self.device
        pool = None

        def keep(graph):
            nonlocal pool
            if pool is None and hasattr(graph, "pool"):
                pool = graph.pool()
            self._sync()
            return graph

        def inputs(tokens: int, seqs: int) -> dict[str, torch.Tensor]:
            """The static buffers a graph reads its step from and writes its output to."""
            return {
                "ids": torch.zeros(tokens, dtype=torch.long, device=dev),
                "positions": torch.zeros(tokens, dtype=torch.long, device=dev),
                "slots": torch.full((tokens,), -1, dtype=torch.long, device=dev),
                "tables": torch.zeros(seqs, width, dtype=torch.int32, device=dev),
                "ctx": torch.zeros(seqs, dtype=torch.int32, device=dev),
                "cu": torch.zeros(seqs + 1, dtype=torch.int32, device=dev),  # prefill only
                "out": torch.zeros(tokens, self.mcfg.hidden_size, dtype=self.dtype, device=dev),
            }

        buckets = self.prefill_graph_buckets()
        if buckets:
            p = self.prefill_inputs = inputs(buckets[-1], PREFILL_GRAPH_SEQS)
        for t in reversed(buckets):
            meta = AttentionMetadata(True, p["slots"][:t], p["tables"], p["ctx"], p["cu"], t)

            def prefill(t=t, meta=meta):
                p["out"][:t] = self.model(p["ids"][:t], p["positions"][:t], meta)

            if not self.prefill_graphs:
                prefill()  # warm-up (the profiling pass compiled the prefill kernels)
            self.prefill_graphs[t] = keep(capture(prefill, pool))

        g = self.graph_inputs = inputs(n, n)
        for b in reversed(self.graph_buckets()):
            meta = AttentionMetadata(
                False, g["slots"][:b], g["tables"][:b], g["ctx"][:b],
                num_splits=self.num_splits(b, self.max_model_len),
            )

            def decode(b=b, meta=meta):
                g["out"][:b] = self.model(g["ids"][:b], g["positions"][:b], meta)

            decode()  # warm-up: compiles the decode kernels a split count needs first
            self.graphs[b] = keep(capture(decode, pool))
