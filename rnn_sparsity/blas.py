"""OpenBLAS thread control (NumPy's, and SciPy's that JAX's CPU LAPACK kernels call), as threadpoolctl
would do it: `single_threaded_blas()` holds OpenBLAS to one thread inside a block."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib

# (get, set) of OpenBLAS's global thread count, by the names that SciPy's and NumPy's wheels export
_OPENBLAS_THREAD_API = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                        ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                        ("openblas_get_num_threads", "openblas_set_num_threads"))


@functools.cache
def _openblas_thread_controls() -> tuple:
    """(get, set) pairs for the OpenBLAS builds behind NumPy's LAPACK and JAX's CPU LAPACK kernels
    (which jaxlib takes from scipy.linalg.cython_lapack); empty where they are something else."""
    controls, seen = [], set()
    for module in ("numpy.linalg._umath_linalg", "scipy.linalg.cython_lapack"):
        try:
            lib = ctypes.CDLL(importlib.import_module(module).__file__)
        except (ImportError, OSError, TypeError):
            continue
        for get_name, set_name in _OPENBLAS_THREAD_API:
            get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is None or set_ is None:
                continue
            address = ctypes.cast(set_, ctypes.c_void_p).value
            if address not in seen:
                seen.add(address)
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                controls.append((get, set_))
            break
    return tuple(controls)


@contextlib.contextmanager
def single_threaded_blas():
    """OpenBLAS (NumPy's, and SciPy's that JAX's CPU Cholesky and eig call) on one thread inside the
    block, as threadpoolctl would (the count is per process: other threads' BLAS calls run on one
    thread too while the block lasts). Our LAPACK calls are small (N ~ 100–200) and many: OpenBLAS
    splits each over its threads (potrf from N = 64 in float64, 128 in float32; the ~N
    matrix-vector products of eig's Hessenberg reduction from N ≈ 96), and on a busy machine every
    split waits for a descheduled thread. Measured with other processes running BLAS: three
    100×100 eigvals 0.3–2 s instead of 11–40 ms on one thread; the N = 200 search 1.4–30 s instead
    of 0.4 s. On an idle machine one thread was as fast (N = 100) or faster (N = 200)."""
    controls = _openblas_thread_controls()
    previous = [get() for get, _ in controls]
    for _, set_ in controls:
        set_(1)
    try:
        yield
    finally:
        for (_, set_), count in zip(controls, previous):
            set_(count)
