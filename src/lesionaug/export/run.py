"""Model folder -> engine folder: export each graph to ONNX, verify it against PyTorch, write the card.

The engine is built in a hidden folder beside the target and renamed into place at the end, so a
failed export (including a failed verification) leaves no engine behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lesionaug import __version__
from lesionaug.cards import read_card
from lesionaug.atomic_files import replace_folder
from lesionaug.engine.card import EngineCard
from lesionaug.engine.integrity import remember_digest
from lesionaug.engine.registry import register_engine
from lesionaug.engine.session import verification_session
from lesionaug.errors import ConfigError, LesionaugError, ModelError, UsageError
from lesionaug.formats import CARD_NAME, ENGINE_FORMAT, MODEL_FORMAT
from lesionaug.progress import SILENT, Reporter
from lesionaug.safe_weights import refuse_pickle_weights
from lesionaug.train.pix2pixhd_config import GENERATOR_KIND

PRECISIONS = ("fp32", "fp16")
MIN_OPSET, MAX_OPSET = 18, 23
# Max |ORT - PyTorch| allowed at verification, relative to max(1, max |PyTorch output|).
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}
VERIFY_BATCH, VERIFY_UNITS, VERIFY_SEED = 2, (1, 2), 1234
EXAMPLE_BATCH, EXAMPLE_UNITS = 2, (2, 2)


@dataclass(frozen=True)
class ExportSettings:
    """How to export: validated once here."""

    precision: str = "fp32"
    verify: bool = True
    opset: int = 18
    force: bool = False
    external_data: bool | None = None  # None: weights beside the graph only when too large for one file

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}", fix="use --precision fp32 or fp16")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise UsageError(f"opset {self.opset} is not supported",
                             fix=f"use an opset from {MIN_OPSET} to {MAX_OPSET} (the dynamo exporter needs >= 18)")


@dataclass(frozen=True)
class ExportResult:
    engine_dir: Path
    precision: str
    size_multiple: int
    graphs: dict[str, dict]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["engine_dir"] = str(self.engine_dir)
        return data


def read_model_card(model_dir: Path) -> dict[str, Any]:
    """``MODEL_DIR/lesionaug.json``, checked for the fields export needs."""
    card = read_card(model_dir, MODEL_FORMAT)
    card_path = model_dir / CARD_NAME
    if not isinstance(card.get("latent"), bool):
        raise ModelError("model card has no boolean 'latent' field", path=card_path, fix="retrain the model")
    needed = ["unet", "controlnet", "text_encoder", "tokenizer", "scheduler"] + (["vae"] if card["latent"] else [])
    missing = [name for name in needed if not (model_dir / name).is_dir()]
    if missing:
        raise ModelError(f"model folder is missing {', '.join(f'{m}/' for m in missing)}", path=model_dir,
                         fix="pass a complete model folder written by `lesionaug train`")
    return card


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _graph_io(path: Path) -> dict[str, dict[str, list]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def dims(value) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return {"inputs": {v.name: dims(v) for v in model.graph.input},
            "outputs": {v.name: dims(v) for v in model.graph.output}}


def _prepare_target(engine_dir: Path, force: bool) -> Path:
    """Check the target before any expensive step; return the temp folder to build in."""
    if engine_dir.exists() and not engine_dir.is_dir():
        raise ConfigError("engine path exists and is not a folder", path=engine_dir, fix="choose another --out")
    if engine_dir.is_dir() and any(engine_dir.iterdir()) and not force:
        raise ConfigError("engine folder exists and is not empty", path=engine_dir,
                          fix="choose another --out, or pass --force to replace it")
    try:
        engine_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = engine_dir.parent / f".{engine_dir.name}.partial-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as exc:
        raise ConfigError(f"cannot write the engine folder ({exc.strerror})", path=engine_dir.parent,
                          fix="choose a writable --out") from None
    return tmp


def export_model(
    model_dir: str | Path,
    engine_dir: str | Path,
    precision: str = "fp32",
    verify: bool = True,
    reporter: Reporter = SILENT,
    *,
    opset: int = 18,
    force: bool = False,
    external_data: bool | None = None,
    allow_pickle: bool = False,
) -> ExportResult:
    """Export ``model_dir`` to an ONNX engine folder at ``engine_dir``; see the module docstring.

    ``external_data``: True writes every graph's weights to ``<graph>.onnx.data`` beside it (what a
    graph over 2 GB needs, e.g. a Stable Diffusion 1.5 denoiser); None does so only for large graphs.
    ``allow_pickle``: accept pickle weight files in the model folder (refused otherwise: they can run code).
    """
    settings = ExportSettings(precision=precision, verify=verify, opset=opset, force=force,
                              external_data=external_data)
    model_dir, engine_dir = Path(model_dir), Path(engine_dir)
    start = time.perf_counter()

    # 1. Check inputs before anything slow.
    model_card = read_card(model_dir, MODEL_FORMAT)
    gan = model_card.get("generator") == GENERATOR_KIND
    if not gan:
        model_card = read_model_card(model_dir)
    elif settings.precision != "fp32":
        reporter.info("a Pix2PixHD generator is exported in fp32 (a small graph; instance norm drifts in fp16)")
    refuse_pickle_weights(model_dir, allow_pickle)
    tmp = _prepare_target(engine_dir, settings.force)
    try:
        if gan:  # Pix2PixHD: one graph, label map -> image (export/pix2pixhd.py)
            from lesionaug.export.pix2pixhd import export_pix2pixhd

            with reporter.task("exporting the Pix2PixHD generator", total=None):
                card = export_pix2pixhd(model_dir, model_card, tmp, opset=settings.opset, verify=settings.verify,
                                        external_data=settings.external_data, sha256=_sha256, graph_io=_graph_io)
            card["libraries"] = {p: _version(p) for p in ("lesionaug", "onnx", "onnxruntime", "onnxruntime-gpu")}
            (tmp / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
            replace_folder(tmp, engine_dir)
            _remember_digests(engine_dir, card["graphs"])
            _register(engine_dir, reporter)
            return ExportResult(engine_dir, card["precision"], card["size_multiple"], card["graphs"],
                                time.perf_counter() - start)
        # 2. Load the PyTorch parts and work out the geometry every graph shares.
        from lesionaug.export.parts import graph_specs, load_export_parts

        with reporter.task("loading model", total=None):
            parts = load_export_parts(model_dir, model_card, allow_pickle)
        specs = graph_specs(parts, settings.precision)

        # 3. Export and verify each graph.
        graphs: dict[str, dict] = {}
        with reporter.task("exporting graphs", total=len(specs)) as task:
            for name, (spec, reference) in specs.items():
                task.update(graph=name)
                graphs[name] = _export_one(spec, reference, parts, tmp, settings, reporter)
                task.advance()

        # 4. Tokenizer, scheduler config and the card.
        shutil.copytree(model_dir / "tokenizer", tmp / "tokenizer")
        shutil.copytree(model_dir / "scheduler", tmp / "scheduler")
        geometry = parts.geometry
        card = {
            "format": ENGINE_FORMAT,
            "model": model_card,
            "model_dir": str(model_dir.resolve()),
            "precision": settings.precision,
            "opset": settings.opset,
            "verified": settings.verify,
            "latent": geometry.latent,
            "channels": geometry.channels,
            "scale": geometry.scale,
            "size_multiple": geometry.size_multiple,
            "sample_multiple": geometry.sample_multiple,
            "patch_size": geometry.patch,
            "token_length": geometry.token_length,
            "hidden_size": geometry.hidden_size,
            "max_batch": parts.max_batch,
            "graphs": graphs,
            "exporter": {"name": "torch.onnx.export(dynamo=True)", "torch": _version("torch"),
                         "onnxscript": _version("onnxscript")},
            "libraries": {p: _version(p) for p in ("lesionaug", "diffusers", "transformers", "onnx", "onnxruntime",
                                                   "onnxruntime-gpu")},
            "lesionaug_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        replace_folder(tmp, engine_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remember_digests(engine_dir, graphs)
    _register(engine_dir, reporter)
    return ExportResult(engine_dir, settings.precision, geometry.size_multiple, graphs, time.perf_counter() - start)


def _remember_digests(engine_dir: Path, graphs: dict) -> None:
    """The graphs were hashed as they were written: the first load need not read them again."""
    for graph in graphs.values():
        for rel, digest in {graph["file"]: graph["sha256"], **graph["files"]}.items():
            remember_digest(engine_dir / rel, digest)


def _export_one(spec, reference, parts, folder: Path, settings: ExportSettings, reporter: Reporter) -> dict:
    from lesionaug.export import graphs as g
    geometry = parts.geometry
    example = g.sample_inputs(spec.name, geometry, batch=EXAMPLE_BATCH, units=EXAMPLE_UNITS, seed=0,
                              vocab_size=parts.vocab_size)
    path = folder / spec.filename
    files = g.export_graph(spec, example, path, settings.opset, settings.external_data)
    entry: dict[str, Any] = {
        "file": spec.filename,
        "sha256": _sha256(path),
        "files": {f.name: _sha256(f) for f in files},
        "precision": parts.graph_precision(spec.name, settings.precision),
        **_graph_io(path),
    }
    if settings.verify:
        entry["verification"] = verify_graph(spec.name, reference, path, parts, entry["precision"])
        v = entry["verification"]
        reporter.info(f"{spec.name}: max |ONNX Runtime - PyTorch| = {v['max_abs_diff']:.3g} "
                      f"(tolerance {v['tolerance']:.3g})")
    return entry


def verify_graph(name: str, reference, path: Path, parts, precision: str) -> dict[str, Any]:
    """Run graph ``name`` in ONNX Runtime and PyTorch on one random input; fail on a large difference."""
    import numpy as np

    from lesionaug.export import graphs as g
    inputs = g.sample_inputs(name, parts.geometry, batch=VERIFY_BATCH, units=VERIFY_UNITS, seed=VERIFY_SEED,
                             vocab_size=parts.vocab_size)
    expected = g.run_reference(reference, inputs)
    session, provider = verification_session(path, precision)
    try:
        got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    except Exception as exc:  # noqa: BLE001 - any ORT failure is a verification failure
        raise ModelError(f"{name}.onnx does not run in ONNX Runtime ({str(exc).splitlines()[0]})", path=path,
                         fix="report this with the exporter versions; try another --opset") from None
    scale = max(1.0, float(np.abs(expected).max()))
    tolerance = TOLERANCE[precision] * scale
    finite = bool(np.isfinite(got).all())
    diff = float(np.abs(got.astype(np.float64) - expected).max()) if finite else float("inf")
    result = {"max_abs_diff": diff, "tolerance": tolerance, "provider": provider, "finite": finite,
              "input_shapes": {k: list(v.shape) for k, v in inputs.items()}}
    if not finite:
        raise ModelError(f"verification failed: {name}.onnx produced NaN or inf at {precision}", path=path,
                         fix="export with --precision fp32")
    if diff > tolerance:
        raise ModelError(
            f"verification failed: {name}.onnx differs from PyTorch by {diff:.3g} (tolerance {tolerance:.3g})",
            path=path,
            fix="export with --precision fp32 or another --opset; no engine was written",
        )
    return result


def _register(engine_dir: Path, reporter: Reporter) -> None:
    try:
        index = register_engine(engine_dir, EngineCard.read(engine_dir).summary())
    except (OSError, LesionaugError) as exc:
        reporter.warn(f"engine not recorded in the cache index ({exc}); `lesionaug doctor` will not list it")
    else:
        reporter.info(f"engine recorded in {index}")
