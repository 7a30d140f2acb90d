"""Training pairs in memory: each image and its mask resized and cropped together, once.

Images are resized with bicubic filtering, masks with nearest neighbour only: a bilinear mask has
grey edges, and a ControlNet trained on them learns blurred lesion borders. The preprocessing is
deterministic (shorter side to the resolution, centre crop) so that a latent base can encode every
image once and reuse the latents for the whole run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from lesionaug.dataset.index import read_image as _read_image
from lesionaug.dataset.index import read_mask as _read_mask
from lesionaug.errors import DatasetError
from lesionaug.plan.prompts import build_prompt
from lesionaug.progress import SILENT, Reporter


def resize_and_crop(image: np.ndarray, mask: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale the shorter side to ``resolution`` and centre-crop a square, image and mask alike."""
    h, w = image.shape[:2]
    if mask.shape[:2] != (h, w):
        raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {w}x{h}")
    scale = resolution / min(h, w)
    new_w, new_h = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    left, top = (new_w - resolution) // 2, (new_h - resolution) // 2
    box = (left, top, left + resolution, top + resolution)
    img = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BICUBIC).crop(box)
    msk = Image.fromarray(mask.astype(np.uint8) * 255).resize((new_w, new_h), Image.Resampling.NEAREST).crop(box)
    return np.array(img, dtype=np.uint8), np.array(msk) > 127


def check_binary_control(control: Any) -> None:
    """The control image must hold 0 and 1 only: anything else means a mask was interpolated."""
    import torch

    if not bool(torch.all((control == 0) | (control == 1))):
        values = torch.unique(control)[:8].tolist()
        raise DatasetError(f"control image has values other than 0 and 1 ({values}); masks must be resized nearest")


@dataclass
class TrainingSet:
    """Preprocessed pairs: uint8 images (N, 3, R, R), 0/1 masks (N, 1, R, R), one prompt each."""

    ids: list[str]
    images: Any
    masks: Any
    prompts: list[str]
    diagnoses: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def pixels(self, index: Any) -> Any:
        """Images of ``index`` as float in [-1, 1], the diffusion model's pixel range."""
        return self.images[index].float().div(127.5).sub(1.0)

    def halved(self) -> TrainingSet:
        """The same pairs at half the resolution: images averaged over 2 x 2 pixels, a mask pixel set
        where at least half of its 2 x 2 block is (masks stay 0/1)."""
        import torch.nn.functional as F

        if self.resolution % 2:
            raise ValueError(f"resolution {self.resolution} cannot be halved")
        images = F.avg_pool2d(self.images.float(), 2).round().clamp(0, 255).to(self.images.dtype)
        masks = (F.avg_pool2d(self.masks.float(), 2) >= 0.5).to(self.masks.dtype)
        return TrainingSet(self.ids, images, masks, self.prompts, self.diagnoses)

    def control(self, index: Any) -> Any:
        """Masks of ``index`` as the 3-channel control image in {0, 1} (diffusers' convention)."""
        control = self.masks[index].float().expand(-1, 3, -1, -1).contiguous()
        check_binary_control(control)
        return control


def load_training_set(
    samples: Sequence[Any],
    resolution: int,
    template: str,
    reporter: Reporter = SILENT,
    *,
    read_image=None,
    read_mask=None,
) -> TrainingSet:
    """Read, resize and crop every sample (which must have a mask) into one in-memory set."""
    import torch

    if read_image is None or read_mask is None:
        read_image, read_mask = read_image or _read_image, read_mask or _read_mask
    n = len(samples)
    images = torch.empty((n, 3, resolution, resolution), dtype=torch.uint8)
    masks = torch.empty((n, 1, resolution, resolution), dtype=torch.uint8)
    with reporter.task(f"preparing {n} training pairs at {resolution} px", total=n) as task:
        for i, sample in enumerate(samples):
            try:
                image, mask = resize_and_crop(read_image(sample.image), read_mask(sample.mask), resolution)
            except ValueError as exc:
                raise DatasetError(str(exc), path=sample.mask, fix="fix or remove this pair") from None
            images[i] = torch.from_numpy(image).permute(2, 0, 1)
            masks[i, 0] = torch.from_numpy(mask.astype(np.uint8))
            task.advance(1)
    prompts = [build_prompt(s.labels, template) for s in samples]
    diagnoses = [s.labels.diagnosis for s in samples]
    return TrainingSet([str(s.id) for s in samples], images, masks, prompts, diagnoses)


def tensor_training_set(images: Any, masks: Any, prompts: list[str], ids: list[str] | None = None) -> TrainingSet:
    """A training set from tensors already at the training resolution (uint8 NCHW images, 0/1 masks)."""
    import torch

    images = torch.as_tensor(images, dtype=torch.uint8)
    masks = torch.as_tensor(masks).to(torch.uint8)
    if masks.ndim == 3:
        masks = masks[:, None]
    ids = ids or [f"pair-{i}" for i in range(len(images))]
    return TrainingSet(list(ids), images, masks, list(prompts))
