"""An engine folder for whatever the user points at: an engine is used as it is, a model folder is
exported once into the cache (``LESIONAUG_CACHE/engines/<name>-<key>``) and reused after that.

The cache key hashes the model folder's resolved path, its ``lesionaug.json`` and the size and
modification time of every weight file, so retraining into the same folder makes a new engine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lesionaug.errors import ModelError
from lesionaug.progress import SILENT, Reporter

ENGINE_FORMAT = "lesionaug.engine/1"
MODEL_FORMAT = "lesionaug.model/1"


def folder_format(path: Path) -> str | None:
    """The ``format`` field of ``PATH/lesionaug.json``, or None when there is none."""
    card = Path(path) / "lesionaug.json"
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("format") if isinstance(data, dict) else None


def model_cache_key(model_dir: Path) -> str:
    model_dir = Path(model_dir).resolve()
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(model_dir).encode())
    digest.update((model_dir / "lesionaug.json").read_bytes())
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and path.suffix in (".safetensors", ".json", ".txt") and "checkpoints" not in path.parts:
            stat = path.stat()
            digest.update(f"{path.relative_to(model_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def engine_for(path: Path, reporter: Reporter = SILENT) -> tuple[Path, bool]:
    """(engine folder, whether it was exported now) for a model or engine folder."""
    path = Path(path)
    fmt = folder_format(path)
    if fmt == ENGINE_FORMAT:
        return path, False
    if fmt != MODEL_FORMAT:
        raise ModelError(
            "neither a lesionaug model folder nor an engine folder (no lesionaug.json of either format)",
            path=path,
            fix="pass the folder `lesionaug train --out` or `lesionaug export --out` wrote",
        )
    from lesionaug.cache import cache_root

    engine_dir = cache_root() / "engines" / f"{path.resolve().name}-{model_cache_key(path)}"
    if folder_format(engine_dir) == ENGINE_FORMAT:
        reporter.info(f"using the engine exported earlier: {engine_dir}")
        return engine_dir, False
    from lesionaug.export import export_model

    reporter.info(f"exporting {path} to {engine_dir} (once; later runs reuse it)")
    engine_dir.parent.mkdir(parents=True, exist_ok=True)
    export_model(path, engine_dir, reporter=reporter, force=True)
    return engine_dir, True
