"""``lesionaug doctor``: what this machine offers generation, and what the cache folder holds.

Everything here is read-only and quick: versions from package metadata, providers from a one-node
probe session each, GPUs from nvidia-smi or ONNX Runtime's device list.
"""

from __future__ import annotations

import platform
import sys
from typing import Any

from lesionaug import __version__
from lesionaug.engine.providers import (
    ORT_NAMES,
    PREFERENCE,
    import_onnxruntime,
    nvidia_gpus,
    provider_report,
    resolve_provider,
    tensorrt_version,
)
from lesionaug.engine.registry import cache_root, list_engines, tensorrt_cache_dirs
from lesionaug.environment import library_versions
from lesionaug.errors import BackendError

PACKAGES = ("onnxruntime-gpu", "onnxruntime", "onnx", "onnxscript", "torch", "diffusers", "transformers",
            "numpy", "tensorrt")


def package_versions() -> dict[str, str | None]:
    return {"lesionaug": __version__, "python": platform.python_version(), **library_versions(PACKAGES)}


def ort_devices() -> list[dict[str, Any]]:
    """Hardware devices ONNX Runtime sees and which execution provider can use each."""
    ort = import_onnxruntime()

    if not hasattr(ort, "get_ep_devices"):
        return []
    rows = []
    try:
        devices = ort.get_ep_devices()
    except Exception:  # noqa: BLE001 - older or partial builds
        return []
    for ep_device in devices:
        hw = ep_device.device
        rows.append({"provider": ep_device.ep_name, "type": str(hw.type).rsplit(".", 1)[-1].lower(),
                     "vendor": hw.vendor, "device_id": int(hw.device_id)})
    return rows


def collect_diagnostics() -> dict[str, Any]:
    """The doctor report as plain data (the ``--json`` payload)."""
    # The doctor is where a broken set-up is diagnosed, so a missing ONNX Runtime is reported, not raised.
    try:
        import_onnxruntime()
        ort_missing = None
    except BackendError as exc:
        ort_missing = exc.one_line()
    if ort_missing is None:
        providers = provider_report()
    else:
        providers = [{"provider": short, "ort_name": ORT_NAMES[short], "listed": False, "usable": False,
                      "reason": "onnxruntime is not installed"} for short in PREFERENCE]
    root = cache_root()
    return {
        "versions": package_versions(),
        "platform": {"system": platform.system(), "machine": platform.machine(), "python": sys.executable},
        "onnxruntime_missing": ort_missing,
        "providers": providers,
        "auto_provider": resolve_provider("auto") if ort_missing is None else None,
        "gpus": nvidia_gpus(),
        "ort_devices": ort_devices() if ort_missing is None else [],
        "tensorrt": {"version": tensorrt_version(), "usable": any(p["provider"] == "tensorrt" and p["usable"]
                                                                  for p in providers)},
        "cache": {"path": str(root), "exists": root.is_dir(), "engines": list_engines(),
                  "tensorrt_caches": [str(p) for p in tensorrt_cache_dirs()]},
    }
