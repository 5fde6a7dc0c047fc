"""The custom Ray resources that say where a job may run: `orchestrate hosts join` gives a
node one `slot:<host>:<gpu>` per GPU (or `slot:<host>:cpu`) beside `host:<host>`, and the
ray executor pins each job to its slot's resource. Plain strings, no ray import: both
orchestrator/hosts.py and orchestrator/executors/ import it."""

from __future__ import annotations

SLOT_PREFIX = "slot:"


def slot_resources(host: str, gpus: list[str]) -> dict[str, float]:
    """The custom resources `hosts join` gives a node: one per GPU, one for the host."""
    res = {f"host:{host}": float(max(1, len(gpus)))}
    res.update({slot_resource(host, g): 1.0 for g in gpus or ["cpu"]})
    return res


def slot_resource(host: str, gpu: str) -> str:
    """The resource of one slot: a GPU index, or "cpu"."""
    return f"{SLOT_PREFIX}{host}:{gpu}"


def parse_slot_resource(resource: str) -> tuple[str, str]:
    """(host, gpu) of a slot resource."""
    host, _, gpu = resource.removeprefix(SLOT_PREFIX).rpartition(":")
    return host, gpu
