"""Which engine generates: the one passed with ``--model``, or the dataset's cached compact model.

``--model`` may name an engine folder (used as it is) or a model folder (exported once into the
cache, keyed by the model's card and the digests of the files export reads from it: two folders
with the same card but other weights, from a retrained GPU run, another CPU or a hand edit, get
engines of their own). Without it, the compact model trained on this dataset's training
split is looked up in the cache (keyed by the split's fingerprint, the model size and the step
budget) and trained, exported and cached first when it is not there, unless ``--no-train``.

    CACHE/engines/<model slot>-<precision>/     engines exported from model folders
    CACHE/datasets/<key>/model/  .../engine/    the compact model of one training split
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lesionaug.cards import find_card, read_card
from lesionaug.dataset.subsets import RealSubset, choose_real_subset
from lesionaug.engine.integrity import file_digest, verify_engine
from lesionaug.engine.registry import cache_root
from lesionaug.errors import ConfigError, ModelError
from lesionaug.export.run import export_model
from lesionaug.formats import ENGINE_FORMAT, MODEL_FORMAT, PIPELINE_INDEX_NAME
from lesionaug.output.lock import OutputLock
from lesionaug.progress import SILENT, Reporter
from lesionaug.safe_weights import refuse_pickle_weights
from lesionaug.train.config import TrainConfig
from lesionaug.train.model_folder import COMPONENTS
from lesionaug.train.pix2pixhd_config import GENERATOR_DIR
from lesionaug.train.run import train_model

# Seconds per training step (batch 4), only for the "about N min" line before training: CPU tiny
# from benchmarks/results/train.json, small from benchmarks/results/compact_quality.json at 64 px
# (2 cores) times 1.4, what 3/4 of the steps at 64 px and 1/4 at 128 px took in the demo setting
# (199 s against 140 s); CPU base and the GPU figures are rough guesses.
CPU_SECONDS_PER_STEP = {"tiny": 0.6, "small": 0.31, "base": 20.0}
GPU_SECONDS_PER_STEP = {"tiny": 0.03, "small": 0.05, "base": 0.25}


@dataclass(frozen=True)
class ResolvedModel:
    """The engine a run generates with, where it came from, and the identities the manifest records."""

    engine_dir: Path
    model_dir: Path | None
    engine_hash: str
    model_hash: str
    source: str  # "engine", "exported", "cached" or "trained"
    engine_card: dict
    model_card: dict

    def record(self) -> dict:
        return {
            "source": self.source,
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "engine_dir": str(self.engine_dir),
            "model_hash": self.model_hash,
            "engine_hash": self.engine_hash,
            "model": {"lesionaug": self.model_card},
            "engine": {"lesionaug": {k: v for k, v in self.engine_card.items() if k != "model"}},
        }


def model_hash(model_card: dict) -> str:
    """The model's identity: its card (training config, data fingerprints, training ids, steps)."""
    return hashlib.sha256(json.dumps(model_card, sort_keys=True, default=str).encode()).hexdigest()


# What export reads from a model folder: the networks' folders (diffusers' layout, or Pix2PixHD's
# generator/) and a latent model's pipeline index; not training's by-products (checkpoints/,
# samples/, the loss log), which change nothing in the engine.
EXPORTED_PARTS = (*COMPONENTS, GENERATOR_DIR, PIPELINE_INDEX_NAME)


def model_files_digest(model_dir: Path) -> str:
    """sha256 over the relative path and sha256 of every file export reads from ``model_dir``
    (``EXPORTED_PARTS``). Each file's digest is cached by its size and times (``engine/integrity.py``),
    so only a new or changed file is read again."""
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    for part in EXPORTED_PARTS:
        path = model_dir / part
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in (f for f in files if f.is_file()):
            h.update(f"{file.relative_to(model_dir).as_posix()} {file_digest(file)}\n".encode())
    return h.hexdigest()


def engine_slot(model_dir: Path, card: dict, precision: str) -> str:
    """The cache folder name of a model folder's engine: its card and its files, so the same card
    over other weights never reuses an engine exported from the first."""
    key = hashlib.sha256(f"{model_hash(card)} {model_files_digest(model_dir)}".encode()).hexdigest()
    return f"{key[:24]}-{precision}"


def engine_hash(engine_dir: Path, card: dict) -> str:
    """The engine's identity: its graph files' sha256 and the tokenizer and scheduler files.

    The graphs are hashed from the files (``engine/integrity.py``: cached by file state, and a file
    that differs from its card is refused, exit 4), never taken from the card's text. Not the card
    itself (it carries a creation time) nor caches kept beside the graphs, so re-registering an
    engine or building TensorRT caches does not change it.
    """
    digests = verify_engine(Path(engine_dir), card.get("graphs") or {})
    h = hashlib.sha256()
    for name in sorted(digests):
        main = card["graphs"][name]["file"]
        h.update(f"graph {name} {digests[name][main]}\n".encode())
        for rel in sorted(set(digests[name]) - {main}):  # external-data files
            h.update(f"graph {name} file {rel} {digests[name][rel]}\n".encode())
    for sub in ("tokenizer", "scheduler"):
        folder = Path(engine_dir) / sub
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            h.update(f"{path.relative_to(engine_dir).as_posix()} ".encode())
            h.update(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
    for key in ("precision", "latent", "channels", "scale", "size_multiple"):
        h.update(f"{key} {card.get(key)}\n".encode())
    return h.hexdigest()


def _engine(engine_dir: Path, model_dir: Path | None, source: str) -> ResolvedModel:
    card = find_card(engine_dir)
    if card is None or card.get("format") != ENGINE_FORMAT:
        raise ModelError("not a lesionaug engine folder", path=engine_dir, fix="re-export it with `lesionaug export`")
    model_card = card.get("model") or {}
    if model_dir is None and card.get("model_dir") and Path(card["model_dir"]).is_dir():
        model_dir = Path(card["model_dir"])
    return ResolvedModel(
        engine_dir=Path(engine_dir),
        model_dir=model_dir,
        engine_hash=engine_hash(engine_dir, card),
        model_hash=model_hash(model_card),
        source=source,
        engine_card=card,
        model_card=model_card,
    )


def _locked_export(model_dir: Path, engine_dir: Path, precision: str, reporter: Reporter,
                   allow_pickle: bool = False) -> None:
    """Export ``model_dir`` to ``engine_dir`` unless another run did it while we waited for the lock."""
    locks = cache_root() / "locks" / engine_dir.name
    locks.mkdir(parents=True, exist_ok=True)
    with OutputLock(locks, command="export"):
        card = find_card(engine_dir)
        if card is not None and card.get("format") == ENGINE_FORMAT:
            return
        reporter.info(f"exporting {model_dir} to ONNX ({precision}) into the cache: {engine_dir}")
        export_model(model_dir, engine_dir, precision, True, reporter, force=engine_dir.exists(),
                     allow_pickle=allow_pickle)


def engine_for_model(model_dir: Path, precision: str, reporter: Reporter = SILENT, *,
                     allow_pickle: bool = False) -> ResolvedModel:
    """A model folder's engine from the cache, exported there first when missing. A folder holding
    pickle weights is refused, even when its engine is cached, unless ``allow_pickle``."""
    card = find_card(model_dir)
    if card is None or card.get("format") != MODEL_FORMAT:
        raise ModelError("not a finished lesionaug model folder", path=model_dir, fix="pass a folder `lesionaug train` wrote")
    refuse_pickle_weights(model_dir, allow_pickle)
    engine_dir = cache_root() / "engines" / engine_slot(model_dir, card, precision)
    exists = (find_card(engine_dir) or {}).get("format") == ENGINE_FORMAT
    if not exists:
        _locked_export(model_dir, engine_dir, precision, reporter, allow_pickle)
    return _engine(engine_dir, Path(model_dir), "cached" if exists else "exported")


def resolve_given_model(path: Path, precision: str, reporter: Reporter = SILENT, *,
                        allow_pickle: bool = False) -> ResolvedModel:
    """``--model PATH``: an engine folder, or a model folder exported on the fly (safetensors only
    unless ``allow_pickle``)."""
    path = Path(path).expanduser().resolve()
    card = read_card(path, MODEL_FORMAT, ENGINE_FORMAT)
    if card.get("format") == ENGINE_FORMAT:
        return _engine(path, None, "engine")
    if card.get("format") == MODEL_FORMAT:
        return engine_for_model(path, precision, reporter, allow_pickle=allow_pickle)
    raise ModelError(f"unknown folder format {card.get('format')!r}", path=path, fix="pass a model or engine folder")


@dataclass(frozen=True)
class TrainingBudget:
    """The default compact model for a device: size and step budget (None: the size's default)."""

    model_size: str
    steps: int | None
    device: str  # "cpu" or "gpu"

    def key(self, split_fingerprint: str) -> str:
        """The cache slot: the split, the size, the step budget and a hash of the whole training
        recipe (seed aside), so a release that changes a default never reuses an older model."""
        recipe = {k: v for k, v in self.config().resolved().identity().items() if k != "seed"}
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:8]
        steps = self.steps if self.steps is not None else "default"
        return f"{split_fingerprint[:24]}-{self.model_size}-{steps}-{digest}"

    def config(self, seed: int = 0):
        if self.steps is None:
            return TrainConfig(base="compact", model_size=self.model_size, seed=seed)
        return TrainConfig(base="compact", model_size=self.model_size, steps=self.steps, base_steps=self.steps, seed=seed)

    def estimate_seconds(self) -> float:
        config = self.config().resolved()
        per_step = (GPU_SECONDS_PER_STEP if self.device == "gpu" else CPU_SECONDS_PER_STEP)[self.model_size]
        return per_step * (config.steps + (config.base_steps or 0)) + (60.0 if self.device == "cpu" else 20.0)


def _cuda_usable() -> bool:
    """``torch.cuda.is_available()``, without importing torch (seconds) where no NVIDIA driver is
    visible, so a dry run on a CPU machine stays light and plans what the real run will."""
    if not (Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi")):
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def default_budget(model_size: str | None, train_steps: int | None) -> TrainingBudget:
    """``small`` on a CPU (minutes on 2 cores for the example data), ``base`` on a CUDA GPU."""
    device = "gpu" if _cuda_usable() else "cpu"
    size = model_size or ("base" if device == "gpu" else "small")
    return TrainingBudget(size, train_steps, device)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def dataset_model(
    index,
    budget: TrainingBudget,
    precision: str,
    *,
    no_train: bool,
    seed: int = 0,
    reporter: Reporter = SILENT,
    real_subset: RealSubset | None = None,
) -> ResolvedModel:
    """The cached compact model of this dataset's training split (``real_subset`` of it when given),
    trained and exported when missing."""
    train = choose_real_subset(index.usable("train"), real_subset, root=index.root)
    split_fingerprint = index.subset_fingerprint(train)
    folder = cache_root() / "datasets" / budget.key(split_fingerprint)
    model_dir, engine_dir = folder / "model", folder / f"engine-{precision}"
    if (find_card(engine_dir) or {}).get("format") == ENGINE_FORMAT:
        return _engine(engine_dir.resolve(), model_dir if model_dir.is_dir() else None, "cached")
    if (find_card(model_dir) or {}).get("format") != MODEL_FORMAT:
        if no_train:
            raise ModelError(
                f"no trained model is cached for this dataset's training split ({len(train)} pairs) and --no-train is set",
                path=folder,
                fix=f"train one with `lesionaug train {index.root} --out MODEL_DIR` and pass --model MODEL_DIR, "
                "or drop --no-train to train the compact model now",
            )
        _train_into_cache(index, model_dir, budget, seed, len(train), reporter, real_subset)
        source = "trained"
    else:
        source = "cached"
    resolved = engine_for_model(model_dir, precision, reporter)
    # Keep the dataset's engine beside its model, so the next run finds both by the split alone.
    if not engine_dir.exists():
        try:
            os.symlink(resolved.engine_dir, engine_dir, target_is_directory=True)
        except OSError:
            pass
    return ResolvedModel(resolved.engine_dir, model_dir, resolved.engine_hash, resolved.model_hash, source,
                         resolved.engine_card, resolved.model_card)


def _train_into_cache(
    index, model_dir: Path, budget: TrainingBudget, seed: int, n_train: int, reporter: Reporter,
    real_subset: RealSubset | None = None,
) -> None:
    config = budget.config(seed)
    resolved = config.resolved()
    reporter.info(
        f"no model cached for this dataset ({n_train} training pairs): training the compact "
        f"{budget.model_size} model first ({resolved.base_steps} + {resolved.steps} steps at "
        f"{resolved.resolution} px, about {_minutes(budget.estimate_seconds())} on this {budget.device}); "
        f"it is cached in {model_dir.parent} for the next run"
    )
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with OutputLock(model_dir.parent, command="train"):
        if (find_card(model_dir) or {}).get("format") == MODEL_FORMAT:
            return  # another run trained it while we waited
        started = time.time()
        try:
            train_model(index, model_dir, config, reporter, resume=True, real_subset=real_subset)
        except ConfigError:
            # A leftover from an older, different run in this cache slot: start it over.
            train_model(index, model_dir, config, reporter, force=True, real_subset=real_subset)
        reporter.info(f"trained the compact model in {_minutes(time.time() - started)}")
