"""Writing synthetic pairs off the hot loop: encode, hash, write atomically, then record in the manifest.

The generation loop hands each finished image and mask to ``PairWriter.submit`` and goes on with
the next batch; a thread pool encodes (Pillow releases the GIL while it compresses), hashes and
writes both files under temporary names, renames them into place, and only then appends the pair's
manifest line. ``submit`` blocks when too many pairs wait, so memory stays bounded.
"""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np

from lesionaug import __version__
from lesionaug.atomic_files import sha256_bytes, write_bytes_atomic
from lesionaug.errors import os_error_in
from lesionaug.output.manifest import ManifestAppender

JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 6
IMAGE_FORMATS = {"jpg": ".jpg", "png": ".png", "bmp": ".bmp"}
MASK_FORMATS = {"png": ".png", "bmp": ".bmp"}


@dataclass(frozen=True)
class PairLayout:
    """Where a synthetic pair goes, relative to the output folder, and how its files are encoded.

    The templates hold ``{id}`` and, for the image, ``{ext}``: e.g. ``"ISIC2018_Task1-2_Training_Input/{id}{ext}"``
    and ``"ISIC2018_Task1_Training_GroundTruth/{id}_segmentation.png"``.
    """

    image_template: str
    mask_template: str
    image_format: str = "png"
    mask_format: str = "png"

    def __post_init__(self) -> None:
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image format {self.image_format!r} is not one of {sorted(IMAGE_FORMATS)}")
        if self.mask_format not in MASK_FORMATS:
            raise ValueError(f"mask format {self.mask_format!r} is not one of {sorted(MASK_FORMATS)}")

    def image_path(self, pair_id: str) -> str:
        return self.image_template.format(id=pair_id, ext=IMAGE_FORMATS[self.image_format])

    def mask_path(self, pair_id: str) -> str:
        return self.mask_template.format(id=pair_id)


def encode_image(image: np.ndarray, fmt: str) -> bytes:
    """RGB uint8 (H, W, 3) -> file bytes (JPEG quality 95, PNG level 6, or BMP)."""
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    buf = io.BytesIO()
    pil = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    if fmt == "jpg":
        pil.save(buf, format="JPEG", quality=JPEG_QUALITY)
    elif fmt == "png":
        pil.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif fmt == "bmp":
        pil.save(buf, format="BMP")
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buf.getvalue()


def encode_mask(mask: np.ndarray, fmt: str) -> bytes:
    """Binary (H, W) mask -> a 1-channel 8-bit file with values 0 and 255."""
    from PIL import Image

    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) mask, got shape {mask.shape}")
    values = np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8)
    buf = io.BytesIO()
    pil = Image.fromarray(values, mode="L")
    if fmt == "png":
        pil.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif fmt == "bmp":
        pil.save(buf, format="BMP")
    else:
        raise ValueError(f"unknown mask format {fmt!r}")
    return buf.getvalue()


@dataclass(frozen=True)
class GenerationStamp:
    """What every manifest line of one run shares: the sampler settings and the model's identity."""

    scheduler: str | None  # None (null in the manifest) for generators without a sampler (Pix2PixHD)
    steps: int | None
    guidance: float | None
    control_scale: float | None
    model_hash: str
    engine_hash: str
    version: str = __version__


@dataclass(frozen=True)
class PairRecord:
    """What the plan says about one pair (everything but pixels)."""

    id: str
    index: int
    prompt: str
    labels: dict
    mask_seed: int
    mask_source: str
    noise_seed: int
    # Set by ``augment --min-fidelity`` (augment/fidelity_filter.py): the kept attempt, its Dice, its seed.
    fidelity: float | None = None
    attempt: int | None = None
    attempt_noise_seed: int | None = None


def manifest_entry(record: PairRecord, stamp: GenerationStamp, image: str, mask: str, digests: dict) -> dict:
    checked = {} if record.attempt is None else {
        "fidelity": float(record.fidelity), "attempt": int(record.attempt),
        "attempt_noise_seed": int(record.attempt_noise_seed),
    }  # fmt: skip
    return {
        "id": record.id,
        "index": int(record.index),
        "image": image,
        "mask": mask,
        "sha256": {"image": digests["image"], "mask": digests["mask"]},
        "prompt": record.prompt,
        "labels": record.labels,
        "mask_seed": int(record.mask_seed),
        "mask_source": record.mask_source,
        "noise_seed": int(record.noise_seed),
        "scheduler": stamp.scheduler,
        "steps": None if stamp.steps is None else int(stamp.steps),
        "guidance": None if stamp.guidance is None else float(stamp.guidance),
        "control_scale": None if stamp.control_scale is None else float(stamp.control_scale),
        "model_hash": stamp.model_hash,
        "engine_hash": stamp.engine_hash,
        "version": stamp.version,
        **checked,
    }


def write_pair(
    out: Path, layout: PairLayout, stamp: GenerationStamp, record: PairRecord,
    image: np.ndarray, mask: np.ndarray, *, durable: bool = True,
) -> dict:
    """Encode and write one pair atomically; return its manifest entry (not yet appended)."""
    image_rel, mask_rel = layout.image_path(record.id), layout.mask_path(record.id)
    image_bytes = encode_image(image, layout.image_format)
    mask_bytes = encode_mask(mask, layout.mask_format)
    for rel, data in ((mask_rel, mask_bytes), (image_rel, image_bytes)):
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, data, durable=durable)
    digests = {"image": sha256_bytes(image_bytes), "mask": sha256_bytes(mask_bytes)}
    return manifest_entry(record, stamp, image_rel, mask_rel, digests)


@dataclass
class WriteTally:
    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (pair id, error)
    entries: list[dict] = field(default_factory=list)
    # The OS refused the output (read-only, full, no permission, name too long): no later pair can
    # be written either, so the run stops with this error (exit 3) instead of failing pair by pair.
    refused: OSError | None = None


class PairWriter:
    """A worker pool that writes pairs while the caller generates the next batch."""

    def __init__(
        self, out: Path, layout: PairLayout, stamp: GenerationStamp, manifest: ManifestAppender,
        *, workers: int | None = None, max_pending: int | None = None, durable: bool = True,
        on_written=None,
    ):
        self.out = Path(out)
        self.layout = layout
        self.stamp = stamp
        self.manifest = manifest
        self.durable = durable
        self.workers = workers or max(1, min(8, (os.cpu_count() or 1)))
        self.tally = WriteTally()
        self._on_written = on_written
        self._slots = threading.BoundedSemaphore(max_pending or 4 * self.workers)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="lesionaug-write")
        self._futures: list[Future] = []

    def submit(self, record: PairRecord, image: np.ndarray, mask: np.ndarray) -> Future:
        """Queue one pair; raises the OS error that refused an earlier write (nothing more is queued)."""
        if self.tally.refused is not None:
            raise self.tally.refused
        self._slots.acquire()  # back-pressure: wait while too many pairs are queued
        try:
            future = self._pool.submit(self._write_one, record, image, mask)
        except BaseException:
            self._slots.release()
            raise
        self._futures.append(future)
        return future

    def _write_one(self, record: PairRecord, image: np.ndarray, mask: np.ndarray) -> None:
        try:
            entry = write_pair(self.out, self.layout, self.stamp, record, image, mask, durable=self.durable)
            self.manifest.append(entry)  # only after both files are in place
        except Exception as exc:  # noqa: BLE001 - one failed pair is recorded, the run goes on
            with self._lock:
                self.tally.failed.append((record.id, f"{type(exc).__name__}: {exc}"))
                if self.tally.refused is None:
                    self.tally.refused = os_error_in(exc)
        else:
            with self._lock:
                self.tally.written += 1
                self.tally.entries.append(entry)
            if self._on_written is not None:
                self._on_written(entry)
        finally:
            self._slots.release()

    def close(self) -> WriteTally:
        """Wait for every submitted pair to be written (or to fail) and stop the pool."""
        self._pool.shutdown(wait=True)
        for future in self._futures:
            future.result()
        return self.tally

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
