"""Training checkpoints: everything needed to continue a run exactly where it stopped.

``MODEL_DIR/checkpoints/step-N/`` holds the weights of every network the run trains (safetensors,
one file per network), and ``state.pt`` with the optimizer, learning-rate schedule and random
states (torch, numpy, python, CUDA). Data order and the training noise need no state: both are
drawn from seeds derived from (seed, stage, step), so they are pure functions of the step. A checkpoint folder is written under a temporary
name and renamed, so a crash never leaves a half-written ``step-N``.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lesionaug.errors import ModelError
from lesionaug.formats import TMP_MARK

CHECKPOINTS = "checkpoints"
_STEP = re.compile(r"^step-(\d+)$")


def checkpoint_dirs(out_dir: Path) -> list[tuple[int, Path]]:
    """Finished checkpoints of a run, oldest first."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _STEP.match(child.name)
        if m and (child / "checkpoint.json").is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = checkpoint_dirs(out_dir)
    return found[-1][1] if found else None


def random_states() -> dict:
    import torch

    np_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    out_dir: Path,
    step: int,
    info: dict,
    networks: dict[str, Any],
    optimizer: Any,
    lr_scheduler: Any,
    extra_state: dict | None = None,
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/step-N`` (weights, optimizer, schedule, random states); keep the newest ``keep``."""
    import torch
    from safetensors.torch import save_file

    root = Path(out_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    tmp = root / f"{TMP_MARK}step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, network in networks.items():
        tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        save_file(tensors, str(tmp / f"{name}.safetensors"))
    state = {
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "random": random_states(),
        **(extra_state or {}),
    }
    torch.save(state, tmp / "state.pt")
    record = {**info, "step": step, "networks": sorted(networks)}
    (tmp / "checkpoint.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for _, old in checkpoint_dirs(out_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint_info(path: Path) -> dict:
    try:
        return json.loads((Path(path) / "checkpoint.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable checkpoint ({exc})", path=path, fix="pass --force to start over") from None


def load_network_weights(path: Path, name: str, network: Any) -> None:
    """Load ``name.safetensors`` of a checkpoint into ``network`` (shapes must match exactly)."""
    from safetensors.torch import load_file

    file = Path(path) / f"{name}.safetensors"
    if not file.is_file():
        raise ModelError(f"checkpoint has no {name} weights", path=file, fix="pass --force to start over")
    network.load_state_dict(load_file(str(file)), strict=True)


def load_training_state(path: Path) -> dict:
    """Optimizer, schedule and random states of a checkpoint (plain tensors only, no pickled code)."""
    import torch

    return torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=True)
