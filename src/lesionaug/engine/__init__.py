"""The inference engine: ONNX Runtime sessions over an exported engine folder.

``Engine.load(engine_dir, provider="auto"|"tensorrt"|"cuda"|"cpu")`` lives in ``runtime.py`` and
builds each graph's runner with its provider's loader (``loaders.py``); ``providers.py`` chooses and
validates execution providers, ``provider_options.py`` says what each is asked for (TensorRT shape
profiles and caches), ``cuda_graphs.py`` which graphs CUDA graphs can capture, ``session.py``
builds sessions and ``binding.py`` moves tensors in and out of them (device values on a GPU);
``integrity.py`` checks each graph file against the sha256 its card records before anything loads.
This package's ``__init__`` stays light (no onnxruntime import) so the CLI can read engine cards at start-up.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Engine"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from lesionaug.engine.runtime import Engine

        return Engine
    raise AttributeError(name)
