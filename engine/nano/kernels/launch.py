"""How every kernel wrapper launches its kernels: on the device, or, while a compiler is
installed (engine/nano/kernels/aot.py), handed to it to compile for another architecture
instead, so that what is compiled ahead of time is exactly what the wrapper launches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

_compiler: Callable | None = None


def launch(kernel, grid: tuple[int, ...], *args, **meta) -> None:
    """kernel[grid](*args, **meta), or the installed compiler's compile of that launch."""
    if _compiler is None:
        kernel[grid](*args, **meta)
    else:
        _compiler(kernel, args, meta)


@contextmanager
def compiling_with(compiler: Callable) -> Iterator[None]:
    """Launches inside the block call compiler(kernel, args, meta) and run nothing."""
    global _compiler
    _compiler = compiler
    try:
        yield
    finally:
        _compiler = None
