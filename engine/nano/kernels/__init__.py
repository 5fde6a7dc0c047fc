"""Triton kernels, each with its torch reference in reference.py.

Each kernel's wrapper launches it through launch.py. The launch configurations that depend
on the card (decode and prefill attention's) are chosen in choose.py from card.py's
description of the device; the elementwise kernels' (one program a row or token) depend on
the row's length only. aot.py compiles every launch ahead of time for named cards.

Modules here other than reference.py, card.py and launch.py import triton; import them only
where Triton runs (CUDA, or CPU under TRITON_INTERPRET=1 in tests, or aot.py).
"""
