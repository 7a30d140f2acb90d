"""The model folder: a diffusers layout plus ``lesionaug.json``, which export and generation read.

    MODEL_DIR/unet/ controlnet/ text_encoder/ tokenizer/ scheduler/ [vae/]   (safetensors only)
    MODEL_DIR/model_index.json    latent models: StableDiffusionControlNetPipeline.from_pretrained(MODEL_DIR)
    MODEL_DIR/shape_model.npz     the mask shape model fitted on the training masks (if they allow one)
    MODEL_DIR/lesionaug.json      written last: its presence means the folder is complete
    MODEL_DIR/lesionaug-train.json   the run that writes (or wrote) here: config and data identity
    MODEL_DIR/checkpoints/step-N/ MODEL_DIR/samples/step-N.png
    MODEL_DIR/loss.csv MODEL_DIR/loss_curve.png [MODEL_DIR/logs/]   the loss history (train/loss_log.py)

Each network is saved under a temporary name and swapped in, and ``lesionaug.json`` goes last, so
a crash never leaves a folder that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lesionaug.atomic_files import write_text_atomic
from lesionaug.errors import ConfigError
from lesionaug.formats import CARD_NAME as MODEL_INFO
from lesionaug.formats import LOSS_CURVE_NAME, LOSS_LOG_NAME, MODEL_FORMAT, PIPELINE_INDEX_NAME, TMP_MARK, TRACKER_DIR
from lesionaug.formats import TRAIN_RUN_FORMAT as RUN_FORMAT
from lesionaug.formats import TRAIN_RUN_MARKER as RUN_MARKER
from lesionaug.train.networks import quiet_library_progress

COMPONENTS = ("unet", "controlnet", "text_encoder", "tokenizer", "scheduler", "vae")
PIPELINE_INDEX = PIPELINE_INDEX_NAME  # diffusers' pipeline index (latent models)
OWNED = (
    *COMPONENTS, MODEL_INFO, PIPELINE_INDEX, RUN_MARKER, "shape_model.npz", "checkpoints", "samples",
    LOSS_LOG_NAME, LOSS_CURVE_NAME, TRACKER_DIR, "generator", "discriminator",  # the last two: Pix2PixHD's
)


def read_run_marker(out_dir: Path) -> dict | None:
    try:
        data = json.loads((Path(out_dir) / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if data.get("format") == RUN_FORMAT else None


def _differences(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def prepare_output(
    out_dir: Path, identity: dict, *, resume: bool, force: bool, before_resume: Callable[[], None] | None = None
) -> bool:
    """Check ``out_dir`` before any expensive work; returns True when a previous run is resumed.

    Refused (nothing touched): a file, an unwritable folder, a non-empty folder that holds no
    lesionaug run or a different run, unless ``force``; an existing run without ``resume``.
    ``before_resume`` runs once the folder is known to hold this run, before anything changes.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("output path is a file", path=out_dir, fix="pass a folder to --out")
    entries = [p for p in out_dir.iterdir()] if out_dir.is_dir() else []
    marker = read_run_marker(out_dir) if entries else None
    resuming = False
    if entries and not force:
        if marker is None:
            raise ConfigError(
                "output folder is not empty and holds no lesionaug training run",
                path=out_dir,
                fix="choose a new folder, or pass --force to write into it",
            )
        changed = _differences(marker.get("identity", {}), identity)
        if changed:
            raise ConfigError(
                f"output folder holds a different training run (differs in {', '.join(changed)})",
                path=out_dir,
                fix="choose a new folder, or pass --force to replace it",
            )
        if not resume:
            raise ConfigError(
                "output folder already holds this training run",
                path=out_dir,
                fix="pass --resume to continue it, or --force to start over",
            )
        resuming = True
        if before_resume is not None:
            before_resume()
    _check_writable(out_dir)
    if force:
        # The completeness flag goes first, so an interrupted --force never leaves an old model looking whole.
        (out_dir / MODEL_INFO).unlink(missing_ok=True)
        for name in OWNED:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    elif resuming:
        (out_dir / MODEL_INFO).unlink(missing_ok=True)
    return resuming


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f"{TMP_MARK}probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"output folder is not writable ({exc.strerror or exc})",
            path=out_dir,
            fix="choose a folder you can write to",
        ) from None


def write_run_marker(out_dir: Path, identity: dict, extra: dict) -> None:
    record = {"format": RUN_FORMAT, "identity": identity, **extra}
    write_text_atomic(Path(out_dir) / RUN_MARKER, json.dumps(record, indent=2, default=str) + "\n")


def save_component(out_dir: Path, name: str, obj: Any) -> Path:
    """``obj.save_pretrained`` into ``out_dir/name`` via a temporary folder (safetensors for networks)."""
    final = Path(out_dir) / name
    tmp = Path(out_dir) / f"{TMP_MARK}{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(obj, "state_dict"):
        obj.save_pretrained(tmp, safe_serialization=True)
    else:
        obj.save_pretrained(tmp)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def write_model_folder(out_dir: Path, parts: Any, info: dict) -> Path:
    """Save every network of ``parts``, then ``lesionaug.json`` last."""
    quiet_library_progress()
    out_dir = Path(out_dir)
    (out_dir / MODEL_INFO).unlink(missing_ok=True)
    for name in COMPONENTS:
        if name == "scheduler":
            obj = parts.noise_scheduler
        else:
            obj = getattr(parts, name)
        if obj is not None:
            save_component(out_dir, name, obj)
    if parts.vae is not None and parts.controlnet is not None:
        write_text_atomic(out_dir / PIPELINE_INDEX, json.dumps(pipeline_index(parts), indent=2) + "\n")
    record = {"format": MODEL_FORMAT, **info}
    write_text_atomic(out_dir / MODEL_INFO, json.dumps(record, indent=2, default=str) + "\n")
    return out_dir / MODEL_INFO


def pipeline_index(parts: Any) -> dict:
    """``model_index.json`` of a latent model: ``StableDiffusionControlNetPipeline.from_pretrained(MODEL_DIR)``
    loads the whole folder (a pixel-space model has no VAE, which that pipeline needs)."""
    import diffusers

    def entry(obj: Any) -> list[str]:
        library = "diffusers" if type(obj).__module__.startswith("diffusers") else "transformers"
        return [library, type(obj).__name__]

    index = {"_class_name": "StableDiffusionControlNetPipeline", "_diffusers_version": diffusers.__version__}
    for name in ("vae", "text_encoder", "tokenizer", "unet", "controlnet"):
        index[name] = entry(getattr(parts, name))
    index["scheduler"] = entry(parts.noise_scheduler)
    index.update({"safety_checker": [None, None], "feature_extractor": [None, None], "image_encoder": [None, None],
                  "requires_safety_checker": False})
    return index
