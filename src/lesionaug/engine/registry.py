"""The lesionaug cache folder: ``LESIONAUG_CACHE`` or the platform's user cache.

It holds an index of the engines ``lesionaug export`` wrote (so ``lesionaug doctor`` can list them
wherever they live) and TensorRT engine/timing caches for engine folders that are read-only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lesionaug.formats import CARD_NAME, ENGINE_FORMAT

INDEX_NAME = "engines.json"


def cache_root() -> Path:
    """The cache folder (not created)."""
    env = os.environ.get("LESIONAUG_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lesionaug", appauthor=False))


def _read_index(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def register_engine(engine_dir: Path, summary: dict[str, Any]) -> Path:
    """Record an exported engine in the cache index (atomic write); return the index path."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    index = _read_index(root)
    key = str(Path(engine_dir).resolve())
    index[key] = {**summary, "path": key, "registered": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = root / f".{INDEX_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, root / INDEX_NAME)
    return root / INDEX_NAME


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_engines() -> list[dict[str, Any]]:
    """Engines known to the cache: the index plus engine folders stored inside the cache folder."""
    root = cache_root()
    found: dict[str, dict[str, Any]] = {}
    for key, entry in _read_index(root).items():
        found[key] = dict(entry)
    if root.is_dir():
        for card in sorted(root.glob(f"*/{CARD_NAME}")) + sorted(root.glob(f"*/*/{CARD_NAME}")):
            try:
                fmt = json.loads(card.read_text(encoding="utf-8")).get("format")
            except (OSError, ValueError, AttributeError):
                continue
            if fmt == ENGINE_FORMAT:
                found.setdefault(str(card.parent.resolve()), {"path": str(card.parent.resolve())})
    engines = []
    for key in sorted(found):
        entry = found[key]
        path = Path(entry["path"])
        entry["exists"] = (path / CARD_NAME).is_file()
        entry["size_bytes"] = _folder_size(path) if entry["exists"] else 0
        trt = path / "trt_cache"
        entry["tensorrt_caches"] = sorted(p.name for p in trt.iterdir() if p.is_dir()) if trt.is_dir() else []
        engines.append(entry)
    return engines


def tensorrt_cache_dirs() -> list[Path]:
    """TensorRT cache folders kept in the cache folder for read-only engines."""
    trt = cache_root() / "tensorrt"
    return sorted(p for p in trt.glob("*/*") if p.is_dir()) if trt.is_dir() else []
