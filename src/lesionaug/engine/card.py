"""The engine folder's ``lesionaug.json``: what was exported, how, and the sizes it accepts.

Pure and light (json only): ``lesionaug doctor`` and the CLI read cards without importing
onnxruntime or torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionaug.cards import read_card
from lesionaug.errors import ConfigError, ModelError
from lesionaug.formats import CARD_NAME, ENGINE_FORMAT


@dataclass(frozen=True)
class EngineCard:
    """The parsed ``ENGINE_DIR/lesionaug.json``."""

    path: Path
    precision: str
    latent: bool
    channels: int
    scale: int  # pixels per sample cell (the VAE factor; 1 for pixel models)
    size_multiple: int  # pixels
    token_length: int
    hidden_size: int
    max_batch: int  # largest denoiser batch the graph was proven for (jobs x 2 with guidance)
    graphs: dict[str, dict] = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    @classmethod
    def read(cls, engine_dir: str | Path) -> EngineCard:
        engine_dir = Path(engine_dir)
        raw = read_card(engine_dir, ENGINE_FORMAT)
        try:
            card = cls(
                path=engine_dir,
                precision=str(raw["precision"]),
                latent=bool(raw["latent"]),
                channels=int(raw["channels"]),
                scale=int(raw["scale"]),
                size_multiple=int(raw["size_multiple"]),
                token_length=int(raw["token_length"]),
                hidden_size=int(raw["hidden_size"]),
                max_batch=int(raw["max_batch"]),
                graphs=dict(raw["graphs"]),
                model=dict(raw.get("model") or {}),
                raw=raw,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"engine card is missing or has a bad field ({exc})", path=engine_dir / CARD_NAME,
                             fix="re-export the engine") from None
        for name, graph in card.graphs.items():
            if not (engine_dir / graph["file"]).is_file():
                raise ModelError(f"graph {name} is missing ({graph['file']})", path=engine_dir,
                                 fix="re-export the engine; an engine folder must be copied whole")
        return card

    def graph_path(self, name: str) -> Path:
        if name not in self.graphs:
            raise ModelError(f"engine has no {name} graph", path=self.path, fix="re-export the engine")
        return self.path / self.graphs[name]["file"]

    def check_size(self, height: int, width: int) -> None:
        """Refuse image sizes the graphs cannot run, with the nearest sizes that work."""
        m = self.size_multiple
        for side, value in (("height", height), ("width", width)):
            if value <= 0 or value % m:
                lower, upper = max(m, value // m * m), (value // m + 1) * m
                raise ConfigError(
                    f"image {side} {value} is not a multiple of {m} px, which this engine's UNet needs",
                    path=self.path,
                    fix=f"use masks of {lower} or {upper} px (resize or pad them)",
                )

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "precision": self.precision,
            "latent": self.latent,
            "size_multiple": self.size_multiple,
            "resolution": self.model.get("resolution"),
            "base": self.model.get("base"),
            "graphs": {n: g.get("sha256") for n, g in self.graphs.items()},
        }
