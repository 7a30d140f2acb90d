"""Execution providers: which ones this machine can really use, and the one a run gets.

onnxruntime-gpu lists CUDA and TensorRT even on a machine without a GPU and silently falls back to
the CPU when they fail to load, so "available" here means "a probe session really ran on it".
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import shutil
import subprocess
from typing import Any

from lesionaug.errors import BackendError, UsageError

ORT_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
CHOICES = ("auto", *ORT_NAMES)
PREFERENCE = ("tensorrt", "cuda", "cpu")
TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so", "nvinfer_10.dll", "nvinfer.dll")


def import_onnxruntime():
    """The ``onnxruntime`` module, or a one-line BackendError saying which extra installs it.

    lesionaug depends on neither ``onnxruntime`` nor ``onnxruntime-gpu`` directly: they install the
    same Python module and break each other, so the user picks one through an extra.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendError(
            f"ONNX Runtime is not installed ({exc})",
            fix="pip install 'lesionaug[cpu]' (CPU) or 'lesionaug[gpu]' (CUDA/TensorRT), never both",
        ) from None
    return ort


def listed_providers() -> list[str]:
    """Providers the installed onnxruntime build was compiled with (short names)."""
    ort = import_onnxruntime()

    names = set(ort.get_available_providers())
    return [short for short in PREFERENCE if ORT_NAMES[short] in names]


@functools.cache
def preload_gpu_libraries() -> str | None:
    """Load CUDA/cuDNN from the nvidia-* wheels (what a CUDA torch build installs); None or what failed.

    onnxruntime prints what it could not load on stdout, which is for data: it is kept as the reason.
    """
    import io

    ort = import_onnxruntime()

    if not hasattr(ort, "preload_dlls"):
        return "onnxruntime has no preload_dlls"
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            ort.preload_dlls()
    except Exception as exc:  # noqa: BLE001 - a failed preload only explains a later failure
        return f"{type(exc).__name__}: {exc}"
    failed = [line.split(":")[0].replace("Failed to load ", "") for line in printed.getvalue().splitlines()
              if line.startswith("Failed to load")]
    return f"could not load {', '.join(failed)}" if failed else None


def tensorrt_version() -> str | None:
    """The TensorRT version if its Python package or library can be loaded, else None."""
    try:
        import tensorrt  # type: ignore[import-not-found]

        return str(tensorrt.__version__)
    except Exception:  # noqa: BLE001 - absent or broken: both mean "no TensorRT"
        pass
    for name in TENSORRT_LIBRARIES:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            get = lib.getInferLibVersion
            get.restype = ctypes.c_int
            v = int(get())
            major, minor, patch = (v // 10000, (v // 100) % 100, v % 100) if v >= 100000 else (v // 1000, (v // 100) % 10, v % 100)
            return f"{major}.{minor}.{patch}"
        except AttributeError:
            return "unknown"
    return None


def nvidia_gpus() -> list[dict[str, str]]:
    """GPUs that nvidia-smi reports (empty without nvidia-smi or a GPU)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


def _probe_model() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@functools.cache
def probe_provider(short: str) -> tuple[bool, str | None]:
    """(works, why not): run a one-node graph on ``short`` and check ORT did not fall back."""
    import numpy as np
    ort = import_onnxruntime()

    if short not in listed_providers():
        return False, "not in this onnxruntime build"
    if short == "cpu":
        return True, None
    if short == "tensorrt" and tensorrt_version() is None:
        return False, "TensorRT libraries not found"
    preload_error = preload_gpu_libraries()
    options = ort.SessionOptions()
    options.log_severity_level = 4
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(_probe_model(), options, providers=[ORT_NAMES[short], ORT_NAMES["cpu"]])
        session.run(None, {"x": np.ones((1, 4), np.float32)})
        active = session.get_providers()
    except Exception as exc:  # noqa: BLE001 - any failure means the provider is unusable
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        ort.set_default_logger_severity(3)
    if active and active[0] == ORT_NAMES[short]:
        return True, None
    reason = "no NVIDIA GPU found" if not nvidia_gpus() else "provider failed to initialise (CUDA/cuDNN libraries)"
    if preload_error:
        reason += f"; preload: {preload_error}"
    return False, reason


def usable_providers() -> list[str]:
    """Providers that really run here, best first."""
    return [short for short in listed_providers() if probe_provider(short)[0]]


def provider_report() -> list[dict[str, Any]]:
    """Each known provider: compiled in, usable, and why not."""
    listed = listed_providers()
    rows = []
    for short in PREFERENCE:
        works, reason = probe_provider(short) if short in listed else (False, "not in this onnxruntime build")
        rows.append({"provider": short, "ort_name": ORT_NAMES[short], "listed": short in listed, "usable": works,
                     "reason": reason})
    return rows


def resolve_provider(requested: str) -> str:
    """The provider a run uses: ``auto`` picks the best usable one; a missing one is a BackendError."""
    if requested not in CHOICES:
        raise UsageError(f"unknown provider {requested!r}", fix=f"use one of {', '.join(CHOICES)}")
    usable = usable_providers()
    if requested == "auto":
        return usable[0] if usable else "cpu"
    if requested in usable:
        return requested
    _, reason = probe_provider(requested)
    raise BackendError(
        f"provider {requested} is not available ({reason}); available here: {', '.join(usable) or 'none'}",
        fix=f"use --provider {usable[0] if usable else 'cpu'} or auto; `lesionaug doctor` shows why",
    )
