"""An engine is what its card says: every graph file is hashed and checked against the card on load.

    digests = verify_engine(engine_dir, card.graphs)   # {"denoiser": {"denoiser.onnx": sha256, ...}}

The card (``lesionaug.json``) records the sha256 of each graph and of its ONNX external-data files.
A graph whose bytes differ (a flipped weight, a half-copied file) would generate other images under
the same name, so a mismatch is refused with exit 4 and the fix (re-export). The digests returned are
the files' own, and they, not the card's text, make the engine's identity in manifests.

Hashing a Stable Diffusion denoiser reads 2-3 GB, so each digest is kept in the cache folder
(``file-hashes.json`` beside the engine index), keyed by the file's resolved path, size, mtime,
ctime and inode: a file not touched since it was hashed is not read again, and a file rewritten
in place (even with its mtime put back) gets a new ctime and is hashed again.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from lesionaug.atomic_files import sha256_file
from lesionaug.engine.registry import cache_root
from lesionaug.errors import ModelError
from lesionaug.formats import CARD_NAME, FILE_HASHES_NAME
from lesionaug.safe_paths import resolve_inside

MAX_CACHED_FILES = 4096  # entries kept in the digest cache; the oldest go first
REEXPORT = "re-export the engine (`lesionaug export MODEL_DIR --out ENGINE_DIR --force`) or copy it whole again"
_LOCK = threading.Lock()  # engines of several workers load in threads of one process


def _stat_key(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, entries: dict[str, dict]) -> None:
    """Atomic replace; a cache that cannot be written only costs a re-hash next time."""
    if len(entries) > MAX_CACHED_FILES:
        entries = dict(list(entries.items())[-MAX_CACHED_FILES:])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def file_digest(path: Path) -> str:
    """sha256 of the file at ``path``, read only when the cache has no entry for its current state."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    cache = cache_root() / FILE_HASHES_NAME
    key = str(resolved)
    with _LOCK:
        entry = _read_cache(cache).get(key)
        if isinstance(entry, dict) and entry.get("stat") == _stat_key(stat) and isinstance(entry.get("sha256"), str):
            return entry["sha256"]
    digest = sha256_file(resolved)
    if _stat_key(resolved.stat()) == _stat_key(stat):  # not changed while it was read
        remember_digest(resolved, digest, stat)
    return digest


def remember_digest(path: Path, digest: str, stat: os.stat_result | None = None) -> None:
    """Record a digest already computed (``export`` hashes the graphs it writes) so loads need not re-read."""
    resolved = Path(path).resolve()
    stat = stat or resolved.stat()
    cache = cache_root() / FILE_HASHES_NAME
    with _LOCK:
        entries = _read_cache(cache)
        entries.pop(str(resolved), None)  # re-inserted last: the newest entries are kept
        entries[str(resolved)] = {"stat": _stat_key(stat), "sha256": digest}
        _write_cache(cache, entries)


def external_data_files(graph_path: Path) -> set[str]:
    """The external-data file names the ONNX graph at ``graph_path`` reads its weights from."""
    import onnx

    try:
        model = onnx.load(str(graph_path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf and onnx raise their own errors for a damaged file
        raise ModelError(f"cannot read {graph_path.name} ({str(exc).strip()[:200]})", path=graph_path,
                         fix=REEXPORT) from None
    return {entry.value for tensor in _tensors(model.graph) if tensor.data_location == onnx.TensorProto.EXTERNAL
            for entry in tensor.external_data if entry.key == "location"}


def _tensors(graph):
    """Every tensor of ``graph``: initializers and node attributes, subgraphs (If, Loop) included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors(sub)


def external_data_files_cached(graph_path: Path) -> set[str]:
    """``external_data_files``, kept in the digest cache beside the graph's hash (keyed by its state)."""
    resolved = Path(graph_path).resolve()
    stat = resolved.stat()
    cache = cache_root() / FILE_HASHES_NAME
    with _LOCK:
        entry = _read_cache(cache).get(str(resolved))
    if isinstance(entry, dict) and entry.get("stat") == _stat_key(stat) and isinstance(entry.get("external"), list):
        return set(entry["external"])
    names = external_data_files(resolved)
    with _LOCK:
        entries = _read_cache(cache)
        entry = entries.get(str(resolved))
        if isinstance(entry, dict) and entry.get("stat") == _stat_key(stat):
            entries[str(resolved)] = {**entry, "external": sorted(names)}
            _write_cache(cache, entries)
    return names


def _recorded_files(engine_dir: Path, name: str, graph: dict) -> dict[Path, tuple[str, object]]:
    """Each file of graph ``name`` -> (its name as the card gives it, the sha256 the card records)."""
    source = engine_dir / CARD_NAME
    recorded: dict[Path, tuple[str, object]] = {}
    main = resolve_inside(engine_dir, graph.get("file"), source=source, where=f"graphs.{name}.file", fix=REEXPORT)
    recorded[main] = (str(graph.get("file")), graph.get("sha256"))
    files = graph.get("files") or {}
    if not isinstance(files, dict):
        raise ModelError(f"graphs.{name}.files is not a table of file names and sha256", path=source, fix=REEXPORT)
    for rel, digest in files.items():
        path = resolve_inside(engine_dir, rel, source=source, where=f"graphs.{name}.files", fix=REEXPORT)
        recorded.setdefault(path, (rel, digest))
    return recorded


def verify_graph(engine_dir: Path, name: str, graph: dict) -> dict[str, str]:
    """{file name: sha256} of graph ``name``'s files, each checked against the card; a ModelError otherwise."""
    engine_dir = Path(engine_dir)
    recorded = _recorded_files(engine_dir, name, graph)
    main = next(iter(recorded))
    if not main.is_file():
        raise ModelError(f"graph {name} is missing ({graph.get('file')})", path=engine_dir,
                         fix="re-export the engine; an engine folder must be copied whole")
    digests: dict[str, str] = {}
    for path, (rel, expected) in recorded.items():
        if not path.is_file():
            raise ModelError(f"{rel}, a file of the {name} graph, is missing", path=engine_dir, fix=REEXPORT)
        if not isinstance(expected, str) or len(expected) != 64:
            raise ModelError(f"the card records no sha256 for {rel}", path=engine_dir / CARD_NAME, fix=REEXPORT)
        actual = file_digest(path)
        if actual != expected:
            raise ModelError(
                f"{rel} does not match the sha256 its card records (file {actual[:12]}..., card {expected[:12]}...): "
                "it was changed after export", path=path, fix=REEXPORT)
        digests[rel] = actual
    graph_dir = main.parent.relative_to(engine_dir.resolve()).as_posix()
    for location in sorted(external_data_files_cached(main)):
        rel = location if graph_dir == "." else f"{graph_dir}/{location}"  # relative to the graph's folder
        path = resolve_inside(engine_dir, rel, source=main, where=f"{main.name}'s external data", fix=REEXPORT)
        if path not in recorded:
            raise ModelError(f"{main.name} reads weights from {location}, which its card does not record",
                             path=main, fix=REEXPORT)
    return digests


def verify_engine(engine_dir: Path, graphs: dict[str, dict]) -> dict[str, dict[str, str]]:
    """{graph: {file: sha256}} of every graph of the engine, each checked against its card."""
    if not isinstance(graphs, dict) or not graphs:
        raise ModelError("the engine card lists no graphs", path=Path(engine_dir) / CARD_NAME, fix=REEXPORT)
    return {name: verify_graph(Path(engine_dir), name, graph) for name, graph in sorted(graphs.items())}
