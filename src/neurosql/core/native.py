"""The compiled CPU kernel behind the pairwise SSIM and L1 costs: built once per machine.

``pairwise_kernel.c`` (next to this file) is compiled with the system C
compiler ($CC, default cc) for this CPU (-march=native) into
$XDG_CACHE_HOME/neurosql on first use and loaded with ctypes. When there is
no compiler or the build fails, :func:`kernel` returns None and
:mod:`neurosql.core.losses` uses its pure-PyTorch path: the C code is an
optimisation, never a requirement. The register blocks are ROW_BLOCK rows of
x by ``col_block()`` columns of y: COL_VECTORS vectors whose width the compiler
picks for this CPU (16 floats with AVX-512, 8 with AVX2, 4 otherwise), so the
caller asks the loaded library for it.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path

ROW_BLOCK = 6  # rows of x the kernel keeps in registers (6 x 2 vectors of accumulators measured fastest)
COL_VECTORS = 2  # vectors of columns of y it keeps in registers: 32 columns with AVX-512, 16 with AVX2
SOURCE = (Path(__file__).with_name("pairwise_kernel.c")).read_text()


def _cpu_signature() -> str:
    """What a -march=native build depends on: code built for another CPU may not run on this one."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        info = []
    return "\n".join([platform.machine(), platform.processor(), *sorted({s for s in info if s.startswith("flags")})])


def load(cache_dir: Path, cc: str) -> ctypes.CDLL | None:
    """The C kernel, compiled for this CPU into cache_dir on first use (~1 s) and loaded; None if that fails."""
    flags = ["-O3", "-march=native", "-shared", "-fPIC", f"-DRI={ROW_BLOCK}", f"-DKV={COL_VECTORS}"]
    key = hashlib.sha256("\n".join([SOURCE, cc, *flags, _cpu_signature()]).encode()).hexdigest()[:16]
    path = cache_dir / f"pairwise-{key}.so"
    try:
        if not path.exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
                src, lib = Path(tmp) / "pairwise.c", Path(tmp) / "pairwise.so"
                src.write_text(SOURCE)
                subprocess.run([cc, *flags, "-o", str(lib), str(src)], check=True, capture_output=True, timeout=120)
                os.replace(lib, path)  # atomic, so concurrent processes never load a half-written library
        kernel = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError):
        return None
    p, i, z, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_float
    kernel.ssim_sums.argtypes = [p, p, i, p, p, z, i, i, i, i, i, p, p, f, f, p, z]
    kernel.ssim_sums.restype = i
    kernel.l1_sums.argtypes = [p, i, i, p, z, i, i, p, z]
    kernel.l1_sums.restype = None
    kernel.col_block.argtypes, kernel.col_block.restype = [], i
    return kernel


@functools.cache
def kernel() -> ctypes.CDLL | None:
    """The C kernel for this process, cached under $XDG_CACHE_HOME/neurosql (compiler: $CC, default cc)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "neurosql"
    return load(cache, os.environ.get("CC", "cc"))
