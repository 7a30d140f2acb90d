"""Example data: every demo layout reads back with its counts, labels and splits; same seed, same bytes."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lesionaug.dataset.index import load_dataset, read_image, read_mask
from lesionaug.dataset.layouts.isic_challenge import rasterise_features
from lesionaug.demo.cases import DEMO_LAYOUTS, assign_splits, draw_cases
from lesionaug.demo.layouts import superpixel_map
from lesionaug.demo.write import write_demo_dataset
from lesionaug.errors import ConfigError

DETECTED_AS = {
    "isic2018": "isic2018_task1",
    "isic2017": "isic2017",
    "ham10000": "ham10000",
    "ph2": "ph2",
    "paired": "paired_split",
}
WITH_SPLITS = {"isic2018", "isic2017", "paired"}
ATTRIBUTES_READ = {"isic2018", "isic2017", "ph2", "paired"}  # HAM10000 has no attribute labels


def files_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("layout", DEMO_LAYOUTS)
def test_demo_layout_reads_back_with_counts_labels_and_splits(tmp_path: Path, layout: str) -> None:
    n = 14
    out = write_demo_dataset(tmp_path / layout, n=n, layout=layout, size=48, seed=3)
    cases = draw_cases(n, layout, 3)
    idx = load_dataset(out)
    assert idx.layout == DETECTED_AS[layout]
    assert idx.problems == () and len(idx.usable()) == n
    assert all(s.size == (48, 48) for s in idx.samples)
    by_index = _samples_by_case_index(idx, layout)
    for case in cases:
        sample = by_index[case.index]
        assert sample.labels.diagnosis == case.diagnosis, (case, sample.labels)
        if layout in ATTRIBUTES_READ:
            assert set(sample.labels.attributes) == set(case.attributes), (case, sample.labels)
        if layout in WITH_SPLITS:
            assert sample.split == case.split
        if layout == "ham10000":
            assert (sample.labels.age, sample.labels.sex, sample.labels.site) == (case.age, case.sex, case.site)
    if layout in WITH_SPLITS:
        assert idx.split_source == "folders"
        counts = idx.split_counts()
        assert counts == {"train": 8, "val": 2, "test": 4}  # 60/15/25 of 14
    else:
        assert idx.split_source == "seeded(seed=0)"
    notices = [p.name for p in out.rglob("*.txt")]
    if layout != "ph2":
        assert "ATTRIBUTION.txt" in notices and "LICENSE.txt" in notices


def _samples_by_case_index(idx, layout):
    """Demo ids encode the case index: ISIC_#######, HAM from 24306, lesion_#####, PH2 in writing order."""
    if layout == "ph2":
        return dict(enumerate(sorted(idx.samples, key=lambda s: int(s.id[3:]))))
    if layout == "ham10000":
        return {int(s.id[5:]) - 24306: s for s in idx.samples}
    return {int(s.id.rsplit("_", 1)[1]): s for s in idx.samples}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = write_demo_dataset(tmp_path / "a", n=6, layout="isic2018", size=48, seed=5)
    b = write_demo_dataset(tmp_path / "b", n=6, layout="isic2018", size=48, seed=5)
    c = write_demo_dataset(tmp_path / "c", n=6, layout="isic2018", size=48, seed=6)
    assert files_digest(a) == files_digest(b)
    assert files_digest(a) != files_digest(c)
    assert load_dataset(a).fingerprint == load_dataset(b).fingerprint != load_dataset(c).fingerprint


def test_splits_are_about_60_15_25_and_every_split_is_used() -> None:
    rng = np.random.default_rng(0)
    for n in (3, 7, 40, 200):
        counts = Counter(assign_splits(n, rng))
        assert min(counts.values()) >= 1 and sum(counts.values()) == n
    counts = Counter(assign_splits(200, rng))
    assert counts == {"train": 120, "val": 30, "test": 50}


def test_diagnoses_follow_the_layout_mix_exactly() -> None:
    cases = draw_cases(100, "isic2018", 1)
    counts = Counter(c.diagnosis for c in cases)
    assert counts == {"nv": 35, "mel": 20, "bkl": 15, "bcc": 10, "akiec": 8, "df": 6, "vasc": 6}


def test_lesions_are_darker_than_skin_and_melanomas_darker_than_nevi(demo_isic2018: Path) -> None:
    idx = load_dataset(demo_isic2018)
    contrast, lum = [], {}
    for s in idx.usable():
        gray = read_image(s.image).astype(float).mean(axis=2)
        mask = read_mask(s.mask)
        assert mask.any()
        if (~mask).sum() > 50:
            ring = np.zeros_like(mask)
            ys, xs = np.nonzero(mask)
            ring[max(0, ys.min() - 6) : ys.max() + 7, max(0, xs.min() - 6) : xs.max() + 7] = True
            ring &= ~mask
            if ring.sum() > 20:
                contrast.append(gray[ring].mean() - gray[mask].mean())
        lum.setdefault(s.labels.diagnosis, []).append(gray[mask].mean())
    assert np.mean(np.array(contrast) > 0) > 0.8
    assert np.mean(lum["mel"]) < np.mean(lum["nv"])


def test_attribute_masks_lie_inside_the_lesion(tmp_path: Path) -> None:
    out = write_demo_dataset(tmp_path / "d", n=10, layout="isic2018", size=48, seed=2)
    idx = load_dataset(out)
    seen = 0
    for s in idx.samples:
        lesion = read_mask(s.mask)
        for name, path in s.source["attribute_masks"].items():
            region = read_mask(path)
            assert not (region & ~lesion).any()
            assert region.any() == (name in s.labels.attributes)
            seen += region.any()
    assert seen > 0


def test_isic2017_features_rasterise_onto_the_superpixels(tmp_path: Path) -> None:
    out = write_demo_dataset(tmp_path / "d", n=8, layout="isic2017", size=48, seed=0)
    idx = load_dataset(out)
    for s in idx.samples:
        masks = rasterise_features(s.source["features"], s.source["superpixels"])
        assert {a for a, m in masks.items() if m.any()} == set(s.labels.attributes)
    labels = superpixel_map(np.random.default_rng(0), 48)
    assert labels.min() == 0 and np.array_equal(np.unique(labels), np.arange(labels.max() + 1))


def test_bad_demo_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown demo layout"):
        write_demo_dataset(tmp_path / "x", layout="isic2019")
    with pytest.raises(ConfigError, match="size"):
        write_demo_dataset(tmp_path / "x", size=8)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        write_demo_dataset(tmp_path / "file")
    assert not (tmp_path / "x").exists()
