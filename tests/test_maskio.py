"""Image and mask files: binarisation rule, every mask encoding, pixel checks, content hash, refusals."""

from __future__ import annotations

from pathlib import Path

import layout_fixtures as fx
import numpy as np
import pytest
from file_traps import bomb_png, damage
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from lesionaug.dataset import files as maskio
from lesionaug.dataset.files import binarise, mask_pixel_problem
from lesionaug.dataset.index import read_image, read_mask
from lesionaug.errors import DatasetError


@pytest.mark.parametrize("encoding", ["L255", "01", "palette", "rgb", "1bit", "bmp", "jpeg"])
def test_every_mask_encoding_reads_back_as_the_same_bool_mask(tmp_path: Path, encoding: str) -> None:
    mask = fx.blob(size=(40, 30), seed=3)
    path = fx.write_mask(tmp_path / ("m.jpg" if encoding == "jpeg" else "m.png"), mask, encoding)
    got = read_mask(path)
    assert got.dtype == bool and got.shape == (30, 40)
    if encoding == "jpeg":  # lossy: only edge pixels may flip
        assert (got != mask).mean() < 0.02
    else:
        assert np.array_equal(got, mask)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, (6, 7), elements=st.integers(0, 255)))
def test_binarise_follows_the_datasets_rule(gray: np.ndarray) -> None:
    fg = binarise(gray)
    if gray.max() <= 1:
        assert np.array_equal(fg, gray > 0)
    else:
        assert np.array_equal(fg, gray > 127)


@settings(max_examples=25, deadline=None)
@given(arrays(bool, (5, 9)), st.sampled_from(["L255", "01", "palette", "rgb", "1bit", "bmp"]))
def test_lossless_mask_encodings_round_trip(tmp_path_factory, mask: np.ndarray, encoding: str) -> None:
    path = fx.write_mask(tmp_path_factory.mktemp("m") / "m.png", mask, encoding)
    assert np.array_equal(read_mask(path), mask)


def test_read_image_is_rgb_uint8_for_any_mode(tmp_path: Path) -> None:
    gray = tmp_path / "g.png"
    Image.fromarray(np.full((5, 6), 77, np.uint8), "L").save(gray)
    arr = read_image(gray)
    assert arr.shape == (5, 6, 3) and arr.dtype == np.uint8 and (arr == 77).all()


def test_mask_pixel_checks_find_empty_and_soft_masks(tmp_path: Path) -> None:
    empty = fx.write_mask(tmp_path / "empty.png", np.zeros((10, 10), bool))
    assert mask_pixel_problem(empty)[0] == "empty_mask"
    soft = tmp_path / "soft.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 20, dtype=np.uint8), (20, 1)), "L").save(soft)
    assert mask_pixel_problem(soft)[0] == "non_binary_mask"
    jpeg = fx.write_mask(tmp_path / "ok.jpg", fx.blob((40, 30), 1), "jpeg")
    assert mask_pixel_problem(jpeg) is None


def test_large_files_hash_head_tail_and_blocks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(maskio, "FULL_HASH_BYTES", 1024)
    monkeypatch.setattr(maskio, "_EDGE_BYTES", 256)
    monkeypatch.setattr(maskio, "_BLOCK_BYTES", 64)
    path = tmp_path / "big.bin"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    path.write_bytes(data)
    before = maskio.content_digest(path)
    data[-1] ^= 1
    path.write_bytes(data)
    assert maskio.content_digest(path) != before


def test_read_image_refuses_damaged_files_with_the_path(tmp_path: Path) -> None:
    fx.write_paired(tmp_path, n=2)
    bomb = tmp_path / "bomb.png"
    bomb_png(bomb)
    with pytest.raises(DatasetError, match="decompression bomb") as err:
        read_image(bomb)
    assert str(bomb) in err.value.one_line()
    broken = damage(tmp_path, "corrupt")
    with pytest.raises(DatasetError, match="not a readable image"):
        read_mask(broken)


def test_jpeg_end_check_allows_trailing_bytes_but_not_truncation(tmp_path: Path) -> None:
    path = fx.write_image(tmp_path / "a.jpg", size=(40, 30))
    data = path.read_bytes()
    path.write_bytes(data + b"trailing metadata from a phone" * 10)
    assert maskio.probe_file(path).problem is None
    path.write_bytes(data[:-60])
    assert maskio.probe_file(path).problem[0] == "truncated"
