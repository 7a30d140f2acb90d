"""Reading image and mask files: headers for indexing, pixels for use, and the mask binarisation rule.

Indexing calls ``probe_file``: it reads a file's bytes once, parses the header (never decodes pixels),
checks that the file is complete, and hashes its content. ``read_image`` and ``read_mask`` decode
pixels and refuse damaged or oversized files with a ``DatasetError`` naming the file.

Masks come in every encoding seen in mirrors (L 0/255, 0/1, palette, RGB, 1-bit, JPEG, BMP, 16-bit
PNG or TIFF); all are binarised by one rule (DATASETS.md): convert to 8-bit gray (16-bit and float
values scaled by their mode's full range, not clipped), then foreground = ``v > 0`` if the maximum
is at most 1, else ``v > 127``. The soft-mask check of ``info`` looks at the same 8-bit values, so a
soft mask is reported whatever its bit depth.

EXIF orientation is applied as viewers apply it (``PIL.ImageOps.exif_transpose``): a camera JPEG
stored sideways with orientation 6 is read upright, header-only probes report the upright size,
and the image/mask size check compares upright sizes. The tag is read from the header before
decoding, so the probe and the decoded pixels always agree.

Content hash (used by the dataset fingerprint): blake2b over the file size and its bytes. Files up to
``FULL_HASH_BYTES`` (4 MiB: every mask, HAM10000 and PH2 images, most ISIC JPEGs) are hashed whole, so
any changed pixel changes the hash. Larger files hash their first and last 256 KiB plus 64 evenly
spaced 4 KiB blocks: a pixel change in JPEG or PNG data re-flows the entropy-coded stream after it,
which moves the tail, so edits are still seen while a 10 MB file costs about 0.8 MB of reading.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lesionaug.errors import DatasetError

# Refuse images larger than this many pixels (the largest ISIC images are about 30 MP).
MAX_PIXELS = 80_000_000
FULL_HASH_BYTES = 4 << 20
_EDGE_BYTES = 256 << 10
_BLOCK_BYTES = 4 << 10
_N_BLOCKS = 64

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"})

# Problem codes for damaged files; the index records them and ``info`` refuses them (exit 3). Symlink
# loops and folder symlinks leading outside the dataset are reported but are not damage: no image is lost.
DAMAGE_CODES = frozenset({"unreadable", "corrupt", "truncated", "too_large"})


# EXIF orientation (tag 0x0112) -> the transpose that shows the image upright, as in
# PIL.ImageOps.exif_transpose; 1 (or no tag) means as stored. 5 to 8 swap width and height.
ORIENTATION_TAG = 0x0112
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class FileProbe:
    """What indexing learns about one file without decoding its pixels."""

    size: tuple[int, int] | None  # upright (width, height) from the header; None when damaged
    digest: str  # content hash (hex); "" when the file could not be read
    format: str | None = None  # Pillow format name, e.g. "JPEG"
    problem: tuple[str, str] | None = None  # (code, message) when the file is damaged
    orientation: int = 1  # the EXIF orientation applied (1: none)


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (2..8) of an opened image, 1 when absent or invalid; decodes no pixels.

    PNG keeps EXIF in an eXIf chunk that Pillow sees at open only when it precedes the pixel data
    (as the PNG spec asks); asking for a later one would decode the image, so it is not looked for.
    """
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - a damaged EXIF block is no orientation, not a damaged image
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """The displayed (width, height) of a stored size under an EXIF orientation."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def read_file_bytes(path: Path, limit: int | None = None) -> bytes:
    """All bytes of a file, or the first ``limit`` bytes (a seam tests use to simulate I/O errors)."""
    with open(path, "rb") as fh:
        return fh.read() if limit is None else fh.read(limit)


def _sampled_digest(path: Path, size: int) -> tuple[bytes, str]:
    """Head bytes and a digest of head, tail and evenly spaced blocks of a large file."""
    h = hashlib.blake2b(digest_size=16)
    h.update(struct.pack("<Q", size))
    with open(path, "rb") as fh:
        head = fh.read(_EDGE_BYTES)
        h.update(head)
        step = (size - 2 * _EDGE_BYTES) // (_N_BLOCKS + 1)
        for k in range(1, _N_BLOCKS + 1):
            fh.seek(_EDGE_BYTES + k * step)
            h.update(fh.read(_BLOCK_BYTES))
        fh.seek(size - _EDGE_BYTES)
        tail = fh.read(_EDGE_BYTES)
        h.update(tail)
    return head + tail[-65536:], h.hexdigest()


def content_digest(path: Path) -> str:
    """The content hash of one file (see the module docstring); raises OSError if unreadable."""
    size = os.stat(path).st_size
    if size <= FULL_HASH_BYTES:
        data = read_file_bytes(path)
        return _full_digest(data)
    return _sampled_digest(path, size)[1]


def _full_digest(data: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(struct.pack("<Q", len(data)))
    h.update(data)
    return h.hexdigest()


def _is_truncated(fmt: str | None, data: bytes, file_size: int) -> bool:
    """Cheap completeness check from the file's end markers (no decoding)."""
    tail = data[-65536:].rstrip(b"\x00\r\n ")
    if fmt in ("JPEG", "MPO"):
        if tail.endswith(b"\xff\xd9"):
            return False
        # Markers cannot occur inside entropy-coded data (0xFF is stuffed), so a complete file has an
        # end-of-image marker after its last start-of-scan, even when other bytes trail it.
        last_scan = data.rfind(b"\xff\xda")
        return data.find(b"\xff\xd9", max(last_scan, 0)) < 0
    if fmt == "PNG":
        return b"IEND" not in tail[-64:]
    if fmt == "GIF":
        return not tail.endswith(b";")
    if fmt == "BMP" and len(data) >= 6:
        declared = struct.unpack("<I", data[2:6])[0]
        return declared > file_size
    return False


def _open_header(source: io.BytesIO | Path) -> tuple[tuple[int, int], str | None, int]:
    """Parse only the header (size, format, EXIF orientation); refuse decompression bombs."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(source) as im:
            return im.size, im.format, exif_orientation(im)


def probe_file(path: Path) -> FileProbe:
    """Header size, content hash and damage check of one image or mask file, without decoding pixels."""
    try:
        file_size = os.stat(path).st_size
        if file_size <= FULL_HASH_BYTES:
            data = read_file_bytes(path)
            digest = _full_digest(data)
            source: io.BytesIO | Path = io.BytesIO(data)
        else:
            data, digest = _sampled_digest(path, file_size)
            source = path
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return FileProbe(None, "", None, ("unreadable", f"cannot read the file ({reason})"))
    if file_size == 0:
        return FileProbe(None, digest, None, ("truncated", "the file is empty (0 bytes)"))
    try:
        size, fmt, orientation = _open_header(source)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        return FileProbe(None, digest, None, ("too_large", f"refused as a possible decompression bomb ({exc})"))
    except UnidentifiedImageError:
        return FileProbe(None, digest, None, ("corrupt", "not a readable image (unknown or damaged header)"))
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        return FileProbe(None, digest, None, ("corrupt", f"damaged image header ({exc})"))
    if size[0] * size[1] > MAX_PIXELS:
        msg = f"{size[0]}x{size[1]} pixels is over the {MAX_PIXELS:,}-pixel limit (possible decompression bomb)"
        return FileProbe(None, digest, fmt, ("too_large", msg))
    if size[0] <= 0 or size[1] <= 0:
        return FileProbe(None, digest, fmt, ("corrupt", f"image header says {size[0]}x{size[1]} pixels"))
    size = upright_size(size, orientation)
    if _is_truncated(fmt, data, file_size):
        return FileProbe(size, digest, fmt, ("truncated", f"{fmt} file is truncated (no end marker)"), orientation)
    return FileProbe(size, digest, fmt, None, orientation)


def _load(path: Path, what: str) -> Image.Image:
    """Decode one file fully and turn it upright (EXIF); every failure becomes a DatasetError naming it."""
    path = Path(path)
    fix = f"re-download or delete the {what}, then rerun"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
            if im.size[0] * im.size[1] > MAX_PIXELS:
                im.close()
                raise DatasetError(
                    f"{what} of {im.size[0]}x{im.size[1]} pixels is over the {MAX_PIXELS:,}-pixel limit "
                    "(possible decompression bomb)",
                    path=path,
                    fix=f"resize or remove the {what}",
                )
            orientation = exif_orientation(im)  # from the header, as ``probe_file`` read it
            im.load()
            if orientation == 1:
                return im
            upright = im.transpose(_UPRIGHT[orientation])
            im.close()
            return upright
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{what} refused as a possible decompression bomb ({exc})", path=path, fix=fix) from None
    except FileNotFoundError:
        raise DatasetError(f"{what} does not exist", path=path, fix="check the path") from None
    except PermissionError:
        raise DatasetError(
            f"{what} is not readable (permission denied)", path=path, fix="fix its permissions"
        ) from None
    except UnidentifiedImageError:
        raise DatasetError(f"{what} is not a readable image", path=path, fix=fix) from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise DatasetError(f"{what} is damaged or truncated ({exc})", path=path, fix=fix) from None


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as uint8 RGB, shape (H, W, 3)."""
    im = _load(Path(path), "image")
    try:
        if im.mode != "RGB":
            im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "PA", "LA") else im.convert("RGB")
        return np.asarray(im, dtype=np.uint8).copy()
    finally:
        im.close()


def full_scale(mode: str, top: float) -> float:
    """The value a mask of ``mode`` uses for full white, given its largest value ``top``.

    16-bit modes: 65535. Mode ``I`` (32-bit, how some readers give 16-bit files): 65535 when a value
    is above 255, else 255 (8-bit values in a wider container). Float ``F``: 1.0 when every value is
    at most 1, else 255.
    """
    if mode.startswith("I;16"):
        return 65535.0
    if mode == "F":
        return 1.0 if top <= 1.0 else 255.0
    return 65535.0 if top > 255 else 255.0


def mask_to_gray(im: Image.Image) -> np.ndarray:
    """Any mask encoding as a uint8 (H, W) array (1-bit becomes 0/255, palette its gray levels).

    16-bit and float masks are scaled by their full range (``full_scale``), so 32768/65535 becomes
    128, as the same mask saved in 8 bits reads; integer masks holding only 0 and 1 stay 0/1.
    """
    if im.mode == "1":
        return np.asarray(im, dtype=np.uint8) * np.uint8(255)
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        arr = np.asarray(im)
        if arr.size == 0:
            return arr.astype(np.uint8)
        top = float(arr.max())
        if im.mode != "F" and top <= 1 and arr.min() >= 0:
            return arr.astype(np.uint8)  # a 0/1 mask: the 0/1 rule of ``binarise`` applies
        scale = full_scale(im.mode, top)
        scaled = np.clip(arr, 0, scale).astype(np.float32) * np.float32(255.0 / scale)
        return np.rint(scaled).astype(np.uint8)
    if im.mode != "L":
        im = im.convert("RGBA").convert("L") if im.mode in ("P", "PA", "LA") else im.convert("L")
    return np.asarray(im, dtype=np.uint8)


def binarise(gray: np.ndarray) -> np.ndarray:
    """DATASETS.md rule: foreground = v > 0 if max <= 1, else v > 127."""
    gray = np.asarray(gray)
    if gray.size and gray.max() <= 1:
        return gray > 0
    return gray > 127


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a mask of any encoding as a bool (H, W) array, binarised by ``binarise``."""
    im = _load(Path(path), "mask")
    try:
        return binarise(mask_to_gray(im))
    finally:
        im.close()


def mask_has_foreground(path: str | Path) -> bool:
    """True when a mask binarises to at least one foreground pixel (decodes, but builds no array)."""
    im = _load(Path(path), "mask")
    try:
        gray = im if im.mode == "L" else Image.fromarray(mask_to_gray(im))
        _, high = gray.getextrema()
        return 0 < high <= 1 or high > 127
    finally:
        im.close()


def mask_pixel_problem(path: str | Path) -> tuple[str, str] | None:
    """('empty_mask' | 'non_binary_mask', message) when a mask's pixels are suspicious, else None.

    Non-binary: more than 5% of the pixels sit in the ambiguous middle band (33..222), or a colour
    mask whose channels differ. Lossy JPEG masks keep their mid values to a thin edge and pass.
    """
    im = _load(Path(path), "mask")
    try:
        if im.mode in ("RGB", "RGBA"):
            rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
            spread = (rgb.max(axis=2) - rgb.min(axis=2)) > 32
            if spread.mean() > 0.05:
                return ("non_binary_mask", "colour mask: its channels differ, so it is not a binary mask")
        gray = mask_to_gray(im)
    finally:
        im.close()
    fg = binarise(gray)
    if not fg.any():
        return ("empty_mask", "the mask has no foreground pixels")
    if gray.max() > 1:
        middle = ((gray > 32) & (gray < 223)).mean()
        if middle > 0.05:
            return ("non_binary_mask", f"{middle:.0%} of pixels are neither near 0 nor near 255 (soft or gray mask)")
    return None
