"""Triton kernels, each with its torch reference in reference.py.

Modules here other than reference.py import triton; import them only where Triton runs
(CUDA, or CPU under TRITON_INTERPRET=1 in tests).
"""
