"""What a run ran on: library versions and the CPU features that choose numerical code paths.

Every run record (``augment``, ``train``) and every report carries ``environment_record()``, so two
runs that differ can be told apart by machine. Floating-point results of the same code can differ
across machines where a library picks its kernel at run time: OpenBLAS by CPU model (its
``architecture``), NumPy's SIMD loops by the CPU features it finds, PyTorch's CPU kernels by its
``cpu_capability``. Those choices, and the thread counts, are recorded here. Nothing is timed, so the
record is the same for every run of one installation on one machine.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path

LIBRARIES = (
    "lesionaug", "numpy", "scipy", "pillow", "torch", "monai", "onnxruntime", "onnxruntime-gpu", "diffusers",
    "transformers", "matplotlib", "threadpoolctl",
)
# The /proc/cpuinfo flags that select SIMD code paths in NumPy, OpenBLAS, oneDNN and libjpeg-turbo.
CPU_FLAGS = (
    "sse2", "sse4_1", "sse4_2", "avx", "fma", "f16c", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq",
    "avx512_vnni", "avx512_bf16", "amx_tile",
)
CPUINFO = Path("/proc/cpuinfo")


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Installed versions of ``names`` (by default the libraries lesionaug computes with; None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_description(cpuinfo: Path = CPUINFO) -> dict:
    """CPU model name and the SIMD flags of ``CPU_FLAGS`` it has (Linux; elsewhere the platform's word)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {"model": model, "flags": [f for f in CPU_FLAGS if f in flags]}


def numpy_paths() -> dict:
    """NumPy's baseline SIMD, the dispatch targets it found, and its BLAS with the kernel it chose."""
    import numpy as np

    info: dict = {}
    try:
        from numpy._core import _multiarray_umath as umath

        found = [name for name in umath.__cpu_dispatch__ if umath.__cpu_features__.get(name)]
        info["simd"] = {"baseline": list(umath.__cpu_baseline__), "found": found}
    except (ImportError, AttributeError):
        info["simd"] = None
    info["blas"] = _blas_libraries(np)
    return info


def _blas_libraries(np) -> list[dict] | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: lib.get(k) for k in keep} for lib in threadpool_info() if lib.get("user_api") == "blas"]


def image_codecs() -> dict[str, str | None]:
    """The encoder libraries Pillow was built with (JPEG and PNG bytes depend on their versions)."""
    from PIL import features

    return {name: features.version(name) for name in ("libjpeg_turbo", "zlib")}


def torch_paths() -> dict | None:
    """PyTorch's CPU kernel level and thread count (None when torch is not installed)."""
    try:
        import torch
    except ImportError:
        return None
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "num_threads": torch.get_num_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
    }


def environment_record() -> dict:
    """The environment block of run records and reports (see the module docstring)."""
    return {
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": cpu_description(),
        "libraries": library_versions(),
        "numpy": numpy_paths(),
        "torch": torch_paths(),
        "image_codecs": image_codecs(),
    }


def describe_environment(record: dict) -> str:
    """One line for a report: CPU model and SIMD level, the kernel choices, the key versions."""
    cpu = record.get("cpu") or {}
    flags = cpu.get("flags") or []
    simd = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "baseline")
    blas = ((record.get("numpy") or {}).get("blas") or [{}])[0] or {}
    torch_info = record.get("torch") or {}
    versions = record.get("libraries") or {}
    shown = ", ".join(f"{k} {versions[k]}" for k in ("numpy", "scipy", "torch", "monai", "pillow") if versions.get(k))
    return (
        f"{cpu.get('model', '?')} ({simd}); OpenBLAS kernel {blas.get('architecture', '?')}, "
        f"torch CPU capability {torch_info.get('cpu_capability', '?')} with {torch_info.get('num_threads', '?')} "
        f"threads; Python {record.get('python')}, {shown}"
    )


__all__ = ["cpu_description", "describe_environment", "environment_record", "library_versions"]
