"""Example data: every demo layout reads back with its counts, labels and splits; same seed, same bytes."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lesionaug.dataset.index import load_dataset, read_image, read_mask
from lesionaug.dataset.layouts.isic_challenge import rasterise_features
from lesionaug.demo.cases import DEMO_LAYOUTS, assign_splits, draw_cases, render_case
from lesionaug.demo.layouts import ARCHIVE_METADATA, superpixel_map
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
# The archive names HAM's "akiec" cases by their leaf, "Solar or actinic keratosis": code ak.
ARCHIVE_CODE = {"akiec": "ak"}


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
    # The isic2018 Task 1 images' diagnoses come from the archive export, as on the real release.
    idx = load_dataset(out, labels=[out / ARCHIVE_METADATA] if layout == "isic2018" else ())
    assert idx.layout == DETECTED_AS[layout]
    assert idx.problems == () and len(idx.usable()) == n
    assert all(s.size == (48, 48) for s in idx.samples)
    by_index = _samples_by_case_index(idx, layout)
    for case in cases:
        sample = by_index[case.index]
        expected = ARCHIVE_CODE.get(case.diagnosis, case.diagnosis) if layout == "isic2018" else case.diagnosis
        assert sample.labels.diagnosis == expected, (case, sample.labels)
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
    idx = load_dataset(demo_isic2018, labels=[demo_isic2018 / ARCHIVE_METADATA])
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


def test_bad_demo_options_are_usage_errors_and_a_file_a_config_error(tmp_path: Path) -> None:
    from lesionaug.errors import UsageError

    with pytest.raises(UsageError, match="unknown demo layout"):
        write_demo_dataset(tmp_path / "x", layout="isic2019")
    with pytest.raises(UsageError, match="size"):
        write_demo_dataset(tmp_path / "x", size=8)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        write_demo_dataset(tmp_path / "file")
    assert not (tmp_path / "x").exists()


RENDER_DIGEST_SCRIPT = """
import hashlib
from lesionaug.demo.cases import draw_cases, render_case
h = hashlib.sha256()
for case in draw_cases(8, "isic2018", 0):
    rgb, mask, regions = render_case(case, 48, 0)
    h.update(rgb.tobytes())
    h.update(mask.tobytes())
print(h.hexdigest())
"""
# The 8 images and masks above, rendered on the development machine (AMD EPYC, AVX-512). Every
# machine must give these bits: the renderer uses only IEEE-exact arithmetic (demo/portable_math.py).
RENDER_DIGEST = "70545f18af6bbdbc8cfc949abf89b6886b4a86d4b56368f9b42c4419c8c92990"
# The same 8 cases in the deep style (side light, bubbles, ruler, ink, curly hairs: more exp, sin, cos).
DEEP_RENDER_DIGEST = "92a10fe74180390a4b21f7cce75d46f9b6d7a0621992e37330437f08cf6e41fb"


def _render_digest(style: str = "light", **env: str) -> str:
    import os
    import subprocess
    import sys

    script = RENDER_DIGEST_SCRIPT.replace("render_case(case, 48, 0)", f"render_case(case, 48, 0, {style!r})")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ, **env})
    return proc.stdout.strip()


def test_demo_pixels_do_not_depend_on_the_cpus_simd_paths_or_blas_kernels() -> None:
    """numpy's SIMD dispatch and OpenBLAS's kernel choice once flipped demo pixels from machine to machine;
    forcing numpy to its baseline code and OpenBLAS to its oldest x86 kernel must change no bit."""
    import platform

    from numpy._core import _multiarray_umath as umath

    found = [name for name in umath.__cpu_dispatch__ if umath.__cpu_features__.get(name)]
    assert _render_digest() == RENDER_DIGEST
    forced = {"NPY_DISABLE_CPU_FEATURES": " ".join(found)} if found else {}
    if platform.machine() in ("x86_64", "AMD64"):
        forced["OPENBLAS_CORETYPE"] = "Prescott"
    assert _render_digest(**forced) == RENDER_DIGEST


def test_deep_style_pixels_do_not_depend_on_the_cpus_simd_paths_or_blas_kernels() -> None:
    import platform

    from numpy._core import _multiarray_umath as umath

    found = [name for name in umath.__cpu_dispatch__ if umath.__cpu_features__.get(name)]
    assert _render_digest("deep") == DEEP_RENDER_DIGEST
    forced = {"NPY_DISABLE_CPU_FEATURES": " ".join(found)} if found else {}
    if platform.machine() in ("x86_64", "AMD64"):
        forced["OPENBLAS_CORETYPE"] = "Prescott"
    assert _render_digest("deep", **forced) == DEEP_RENDER_DIGEST


def test_deep_style_has_darker_skin_and_the_same_masks() -> None:
    """Same cases, same lesion masks; outside the lesion the deep style's skin is far darker
    (Fitzpatrick IV-VI against I-III: mean luminance about 70 against about 150 on this set)."""
    skin = {"light": [], "deep": []}
    for case in draw_cases(12, "isic2018", 4):
        masks = []
        for style in skin:
            rgb, mask, regions = render_case(case, 64, 4, style)
            assert set(regions) == set(case.attributes)
            lum = rgb.astype(float) @ [0.299, 0.587, 0.114]
            skin[style].append(lum[~mask].mean())
            masks.append(mask)
        assert np.array_equal(*masks)
    assert np.mean(skin["light"]) - np.mean(skin["deep"]) > 40
    assert max(skin["deep"]) < np.median(skin["light"])


def test_deep_style_is_recorded_beside_the_seed(tmp_path: Path) -> None:
    import json

    from lesionaug.errors import UsageError
    from lesionaug.formats import DEMO_MARKER

    deep = write_demo_dataset(tmp_path / "deep", n=4, layout="isic2018", size=48, seed=1, style="deep")
    light = write_demo_dataset(tmp_path / "light", n=4, layout="isic2018", size=48, seed=1)
    assert json.loads((deep / DEMO_MARKER).read_text())["style"] == "deep"
    assert json.loads((light / DEMO_MARKER).read_text())["style"] == "light"
    assert "(seed 1, style deep)" in next(deep.rglob("ATTRIBUTION.txt")).read_text()
    assert "(seed 1)" in next(light.rglob("ATTRIBUTION.txt")).read_text()
    assert load_dataset(deep).fingerprint != load_dataset(light).fingerprint
    with pytest.raises(UsageError, match="unknown demo style"):
        write_demo_dataset(tmp_path / "x", n=2, style="dark")


def test_isic2018_task3_ids_are_disjoint_from_task1_and_the_archive_export_labels_task1(tmp_path: Path) -> None:
    # As in the real release: Task 1/2 ids from ISIC_0000000, Task 3 (HAM10000) ids from ISIC_0024306.
    out = write_demo_dataset(tmp_path / "d", n=14, layout="isic2018", size=48, seed=3)
    cases = draw_cases(14, "isic2018", 3)
    task3 = (out / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv").read_text()
    task3_ids = {line.split(",")[0] for line in task3.splitlines()[1:]}
    assert task3_ids == {f"ISIC_{24306 + c.index:07d}" for c in cases if c.split == "train"}
    bare = load_dataset(out)
    assert {s.id for s in bare.samples} == {f"ISIC_{c.index:07d}" for c in cases}
    assert all(s.labels.diagnosis is None for s in bare.samples)  # the Task 3 table labels none of them
    joined = load_dataset(out, labels=[out / ARCHIVE_METADATA])
    by_id = {s.id: s for s in joined.samples}
    for case in cases:
        labels = by_id[f"ISIC_{case.index:07d}"].labels
        assert labels.diagnosis == ARCHIVE_CODE.get(case.diagnosis, case.diagnosis)
        assert (labels.age, labels.sex) == (case.age, case.sex)
    assert joined.fingerprint != bare.fingerprint
    assert joined.label_tables[0]["format"] == "isic_archive" and joined.label_tables[0]["matched"] == 14


def test_archive_metadata_only_for_layouts_with_isic_ids(tmp_path: Path) -> None:
    from lesionaug.errors import UsageError

    ham = write_demo_dataset(tmp_path / "ham", n=6, layout="ham10000", size=48, seed=1, archive_metadata=True)
    first = (ham / ARCHIVE_METADATA).read_text().splitlines()[1].split(",")[0]
    assert first == "ISIC_0024306"  # the archive export names HAM10000's own ids
    assert not (write_demo_dataset(tmp_path / "p", n=6, layout="paired", size=48) / ARCHIVE_METADATA).exists()
    with pytest.raises(UsageError, match="needs images with ISIC ids"):
        write_demo_dataset(tmp_path / "ph2", n=6, layout="ph2", size=48, archive_metadata=True)
