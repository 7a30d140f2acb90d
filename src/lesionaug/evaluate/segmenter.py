"""Lesion segmenters from the MONAI U-Net family, trained from scratch to measure what data is worth.

``train_segmenter`` fits a 2-class U-Net (Dice + cross-entropy loss, Adam, MONAI augmentation:
``seg_augment.py``) on (image, mask) pairs resized to a square ``image_size``; ``Segmenter.predict``
returns boolean masks at each input's own size. Training is deterministic for a seed on a given
device: the weights' initialisation, the shuffling and every augmentation draw come from the seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lesionaug.dataset.files import read_image, read_mask
from lesionaug.errors import BackendError, ConfigError, UsageError
from lesionaug.evaluate.seg_augment import PairAugmenter, check_seg_augment
from lesionaug.progress import SILENT, Reporter

if TYPE_CHECKING:
    import torch

ARCHITECTURES = ("unet", "basicunet", "attentionunet")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class SegmenterConfig:
    """How one segmenter is built and trained; validated on construction."""

    arch: str = "unet"
    image_size: int = 128
    epochs: int = 30
    # Optimizer steps; when set it replaces ``epochs`` (whole passes are shuffled as before, the last
    # one is cut short), so segmenters trained on sets of different sizes can get the same training.
    steps: int | None = None
    batch_size: int = 8
    learning_rate: float = 1e-3
    # Feature widths per resolution level, finest first; each level after the first halves the size.
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    augment: str = "classic"  # none, flips or classic (seg_augment.py); the same for real and synthetic pairs
    # Fraction of every batch drawn from the synthetic pairs when a set mixes real and synthetic ones
    # (``train_segmenter``'s ``real_pairs``); None draws both in proportion to their numbers.
    synthetic_share: float | None = None
    # With ``synthetic_share``: the last fraction of the steps draws real pairs only (synthetic
    # pre-training, then real fine-tuning); 0 mixes to the end.
    real_finish: float = 0.0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        check_seg_augment(self.augment)
        if self.arch not in ARCHITECTURES:
            raise UsageError(
                f"unknown segmenter architecture {self.arch!r}", fix=f"use one of {', '.join(ARCHITECTURES)}"
            )
        if self.device not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}", fix=f"use one of {', '.join(DEVICES)}")
        for name in ("image_size", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"steps must be at least 1, got {self.steps}")
        if self.synthetic_share is not None and not 0 < self.synthetic_share < 1:
            raise UsageError(
                f"--synthetic-share must be between 0 and 1 (exclusive), got {self.synthetic_share}",
                fix="pass e.g. 0.5 for half of every batch synthetic, or leave it unset to draw in proportion",
            )
        if not 0 <= self.real_finish < 1:
            raise UsageError(f"--real-finish must be at least 0 and below 1, got {self.real_finish}",
                             fix="pass e.g. 0.25 for the last quarter of the steps on real pairs only, or 0")
        if self.real_finish and self.synthetic_share is None:
            raise UsageError("--real-finish needs --synthetic-share (the share of the batches before the finish)",
                             fix="add --synthetic-share 0.5, or drop --real-finish")
        if not self.learning_rate > 0:
            raise UsageError(f"learning rate must be positive, got {self.learning_rate}")
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise UsageError(f"channels {self.channels} need at least two positive widths")
        if self.arch == "basicunet" and len(self.channels) != 5:
            raise UsageError(
                f"basicunet has exactly 5 resolution levels, got channels {self.channels}",
                fix="pass five widths, e.g. 16,32,64,128,256",
            )
        factor = 2 ** (len(self.channels) - 1)
        if self.image_size % factor:
            raise UsageError(
                f"image size {self.image_size} is not divisible by {factor} ({len(self.channels)} resolution levels)",
                fix=f"use a multiple of {factor}, e.g. --seg-size {max(factor, self.image_size // factor * factor)}",
            )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when a CUDA GPU is usable, else 'cpu'; 'cuda' without one is an error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise BackendError("--seg-device cuda was asked for but torch sees no CUDA GPU", fix="use --seg-device cpu or auto")
    return requested


def build_network(config: SegmenterConfig) -> "torch.nn.Module":
    """A fresh 2-class (background, lesion) network of the configured architecture, RGB input."""
    from monai.networks import nets

    strides = (2,) * (len(config.channels) - 1)
    if config.arch == "unet":
        return nets.UNet(
            spatial_dims=2, in_channels=3, out_channels=2, channels=config.channels, strides=strides, num_res_units=2
        )
    if config.arch == "attentionunet":
        return nets.AttentionUnet(
            spatial_dims=2, in_channels=3, out_channels=2, channels=config.channels, strides=strides
        )
    c = config.channels
    return nets.BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, features=(*c, c[0]))


def load_pairs(
    pairs: Sequence[tuple[Path, Path]], size: int, reporter: Reporter = SILENT, what: str = "training pairs"
) -> tuple[np.ndarray, np.ndarray]:
    """Read (image, mask) files resized to size x size: uint8 (N,3,S,S) images and bool (N,S,S) masks."""
    images = np.empty((len(pairs), 3, size, size), dtype=np.uint8)
    masks = np.empty((len(pairs), size, size), dtype=bool)
    with reporter.task(f"reading {what}", total=len(pairs)) as task:
        for i, (image_path, mask_path) in enumerate(pairs):
            images[i] = square_image(read_image(image_path), size).transpose(2, 0, 1)
            masks[i] = square_mask(read_mask(mask_path), size)
            task.advance()
    return images, masks


def square_image(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def square_mask(mask: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if mask.shape == (size, size):
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)) > 127


def _normalise(batch: "torch.Tensor") -> "torch.Tensor":
    """uint8 0..255 -> float -1..1 (the same operations as ``PairAugmenter``'s)."""
    return batch.float().div_(255.0).mul_(2.0).sub_(1.0)


class Segmenter:
    """A trained network and the config that made it."""

    def __init__(self, network: "torch.nn.Module", config: SegmenterConfig, device: str, history: list[float]):
        self.network = network
        self.config = config
        self.device = device
        self.history = history  # mean training loss per epoch

    def predict(
        self,
        images: Sequence[np.ndarray],
        batch_size: int | None = None,
        output_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[np.ndarray]:
        """Boolean lesion masks for uint8 HxWx3 images, each at its own input size.

        ``output_sizes`` ((h, w) per image) overrides that, e.g. when the images were already
        resized to the network's size and the masks are wanted at the truth's size.
        """
        import torch
        import torch.nn.functional as F

        size = self.config.image_size
        batch_size = batch_size or max(self.config.batch_size, 16)
        self.network.eval()
        out: list[np.ndarray] = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                batch = np.stack([square_image(np.asarray(im), size).transpose(2, 0, 1) for im in chunk])
                logits = self.network(_normalise(torch.from_numpy(batch).to(self.device)))
                lesion = torch.softmax(logits.float(), dim=1)[:, 1:2]
                for k, (image, prob) in enumerate(zip(chunk, lesion)):
                    h, w = output_sizes[start + k] if output_sizes is not None else np.asarray(image).shape[:2]
                    if (h, w) != (size, size):
                        prob = F.interpolate(prob[None], size=(h, w), mode="bilinear", align_corners=False)[0]
                    out.append((prob[0] > 0.5).cpu().numpy())
        return out

    def predict_files(self, paths: Sequence[Path], reporter: Reporter = SILENT) -> list[np.ndarray]:
        """Boolean masks for image files, each at the file's own size."""
        out: list[np.ndarray] = []
        step = max(self.config.batch_size, 16)
        with reporter.task("segmenting", total=len(paths)) as task:
            for start in range(0, len(paths), step):
                chunk = [read_image(p) for p in paths[start : start + step]]
                out.extend(self.predict(chunk, batch_size=step))
                task.advance(len(chunk))
        return out


def shuffled_batches(n: int, batch_size: int, steps: int, generator: "torch.Generator"):
    """(sample indices, pass of each) for every step: whole passes over the n samples, each shuffled
    with the seeded generator, the last one cut short."""
    import torch

    per_pass = (n + batch_size - 1) // batch_size
    done, epoch = 0, 0
    while done < steps:
        order = torch.randperm(n, generator=generator).tolist()
        for step in range(min(per_pass, steps - done)):
            index = order[step * batch_size : (step + 1) * batch_size]
            yield index, [epoch] * len(index)
            done += 1
        epoch += 1


def mixed_batches(
    real: int, synthetic: int, share: float, batch_size: int, steps: int, generator: "torch.Generator",
    real_from: int | None = None,
):
    """(sample indices, pass of each) for every step, a ``share`` of each batch synthetic.

    Samples 0..real-1 are real, the rest synthetic. Each kind is its own stream of shuffled passes,
    so every real pair is seen before any is seen again (and likewise the synthetic ones) however
    few there are; batch k holds floor((k+1)*B*share) - floor(k*B*share) synthetic samples, so the
    share is exact over the run and every batch has B samples. A sample's pass numbers its own
    stream's passes: it seeds that sample's augmentation. From step ``real_from`` on (None: never)
    every batch is real: the steps before it mix, as above.
    """
    import torch

    class Stream:
        def __init__(self, offset: int, n: int):
            self.offset, self.n, self.epoch, self.order = offset, n, -1, []

        def take(self, count: int) -> tuple[list[int], list[int]]:
            index, epochs = [], []
            while len(index) < count:
                if not self.order:
                    self.epoch += 1
                    self.order = (torch.randperm(self.n, generator=generator) + self.offset).tolist()[::-1]
                index.append(self.order.pop())
                epochs.append(self.epoch)
            return index, epochs

    real_stream, synthetic_stream = Stream(0, real), Stream(real, synthetic)
    for k in range(steps):
        n_syn = math.floor((k + 1) * batch_size * share) - math.floor(k * batch_size * share)
        if real_from is not None and k >= real_from:
            n_syn = 0
        r_index, r_epochs = real_stream.take(batch_size - n_syn)
        s_index, s_epochs = synthetic_stream.take(n_syn)
        yield r_index + s_index, r_epochs + s_epochs


def train_segmenter(
    pairs: Sequence[tuple[Path, Path]] | tuple[np.ndarray, np.ndarray],
    config: SegmenterConfig,
    reporter: Reporter = SILENT,
    real_pairs: int | None = None,
) -> Segmenter:
    """Train a segmenter from scratch on (image path, mask path) pairs, or on preloaded arrays.

    Preloaded arrays are what ``load_pairs`` returns (uint8 (N,3,S,S), bool (N,S,S)) at the
    config's image size; passing them lets several runs share one read of the data.
    ``real_pairs``: the first that many pairs are real and the rest synthetic; with
    ``config.synthetic_share`` set and both kinds present, every batch mixes them in that share
    (``mixed_batches``; the last ``config.real_finish`` of the steps real only), else batches are
    drawn from all pairs alike.
    """
    import torch
    from monai.losses import DiceCELoss

    # 1. Check inputs and read the data
    if isinstance(pairs, tuple) and len(pairs) == 2 and isinstance(pairs[0], np.ndarray):
        images, masks = pairs
    else:
        images, masks = load_pairs(list(pairs), config.image_size, reporter)
    if len(images) == 0:
        raise ConfigError("no training pairs to train a segmenter on", fix="check the dataset's training split")
    if images.shape[-2:] != (config.image_size, config.image_size) or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"arrays of size {images.shape[-2:]} do not match image_size {config.image_size}")
    device = resolve_device(config.device)

    # 2. Build the network with weights drawn from the seed, without touching global RNG state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = build_network(config).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    generator = torch.Generator().manual_seed(config.seed)
    augmenter = PairAugmenter(config.augment, config.seed)

    # 3. Train: shuffle with the seeded generator and augment each sample from (seed, sample, pass),
    #    so a seed gives the same run
    images_t = torch.from_numpy(images)
    masks_t = torch.from_numpy(masks)
    n = len(images_t)
    steps_per_epoch = (n + config.batch_size - 1) // config.batch_size
    total_steps = config.steps if config.steps is not None else config.epochs * steps_per_epoch
    mixed = config.synthetic_share is not None and real_pairs is not None and 0 < real_pairs < n
    if mixed:
        real_from = total_steps - round(total_steps * config.real_finish) if config.real_finish else None
        batches = mixed_batches(real_pairs, n - real_pairs, config.synthetic_share, config.batch_size, total_steps,
                                generator, real_from)
    else:
        batches = shuffled_batches(n, config.batch_size, total_steps, generator)
    history: list[float] = []  # mean loss of every steps_per_epoch steps (a pass over the data, when unmixed)
    network.train()
    with reporter.task(f"training {config.arch} segmenter", total=total_steps) as task:
        loss_sum, seen = 0.0, 0
        for done, (index, epochs) in enumerate(batches, start=1):
            x, y = augmenter(images_t[index], masks_t[index], index, epochs)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(network(x.to(device)), y.to(device))
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
            seen += len(index)
            task.advance(epoch=(done - 1) // steps_per_epoch + 1, loss=float(loss.detach()))
            if done % steps_per_epoch == 0 or done == total_steps:
                history.append(loss_sum / seen)
                loss_sum, seen = 0.0, 0
    network.eval()
    return Segmenter(network, config, device, history)

