"""benchmarks/bench_realism_cues.py: the reduced views and the prompt-steering summary."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_realism_cues.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_realism_cues", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dermoscopy(rng, skin, vignette: bool) -> np.ndarray:
    image = np.clip(rng.normal(skin, 8, (32, 32, 3)), 0, 255).astype(np.uint8)
    if vignette:
        y, x = np.mgrid[:32, :32]
        image[(y - 15.5) ** 2 + (x - 15.5) ** 2 > 15**2] = 0
    return image


def test_each_view_removes_its_cue(bench):
    rng = np.random.default_rng(0)
    real = [_dermoscopy(rng, (200, 150, 130), vignette=True) for _ in range(3)]
    generated = [_dermoscopy(rng, (170, 120, 100), vignette=False) for _ in range(3)]
    views = bench.views(real, generated, real, seed=0, colour_matched=generated[:2])
    assert set(views) == set(bench.VIEWS)
    assert views["colour_matched"] == (real, generated[:2])
    assert "colour_matched" not in bench.views(real, generated, real, seed=0)  # only when given
    # Imposing a real field of view blacks out the generated images' corners, as the real ones are.
    imposed = views["field_of_view_imposed"][1]
    assert all((image[0, 0] == 0).all() and (image[16, 16] > 0).all() for image in imposed)
    assert all((image[0, 0] > 0).any() for image in generated)
    # The centre is the middle half of each side; grey has equal channels; the mean colour is flat.
    assert views["centre"][0][0].shape == (16, 16, 3)
    grey = views["centre_grey"][1][0]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    flat = views["mean_colour"][0][0]
    assert (flat == flat[0, 0]).all() and np.abs(flat[0, 0].astype(int) - real[0].reshape(-1, 3).mean(0)).max() <= 0.5
    assert views["centre_blurred"][1][0].std() < views["centre"][1][0].std()  # the noise texture is gone


def test_steering_separates_a_generator_that_reads_its_prompt_from_one_that_does_not(bench):
    mask = np.zeros((32, 32), bool)
    mask[10:22, 10:22] = True

    def pair(lesion):
        image = np.full((32, 32, 3), (200, 150, 130), np.uint8)
        image[mask] = lesion
        return bench.region_means(image, mask)

    colours = {"mel": (60, 40, 30), "nv": (150, 100, 70)}  # a dark melanoma, a light naevus
    real = {d: [pair(c) for _ in range(3)] for d, c in colours.items()}
    follows = {d: [pair(c) for _ in range(2)] for d, c in colours.items()}
    inert = {d: [pair((105, 70, 50)) for _ in range(2)] for d in colours}
    live, dead = bench.steering(real, follows), bench.steering(real, inert)
    real_spread = live["lesion"]["spread_of_group_means_lab"]["real"]
    assert real_spread[0] > 10  # the two diagnoses' lesions differ in lightness
    assert live["lesion"]["spread_of_group_means_lab"]["generated"] == pytest.approx(real_spread, abs=1e-3)
    assert dead["lesion"]["spread_of_group_means_lab"]["generated"] == pytest.approx([0, 0, 0], abs=1e-9)
    assert dead["groups"] == {"mel": {"real": 3, "generated": 2}, "nv": {"real": 3, "generated": 2}}


def _two_region_image(rng, skin, lesion, mask):
    image = np.clip(rng.normal(skin, 6, mask.shape + (3,)), 0, 255)
    image[mask] = np.clip(rng.normal(lesion, 12, (int(mask.sum()), 3)), 0, 255)
    return image.astype(np.uint8)


def test_colour_matching_gives_each_region_the_reference_pairs_lab_statistics(bench):
    from lesionaug.evaluate.image_realism import srgb_to_lab

    rng = np.random.default_rng(1)
    mask = np.zeros((48, 48), bool)
    mask[12:36, 14:34] = True
    generated = _two_region_image(rng, (200, 160, 150), (120, 90, 80), mask)  # pale skin, a brown lesion
    real = _two_region_image(rng, (170, 120, 90), (150, 40, 60), mask)  # tanned skin, a red lesion
    reference = bench.colour_statistics(real, mask)
    matched = bench.match_colours(generated, mask, reference, blend=0)
    after = bench.colour_statistics(matched, mask)
    for region in ("lesion", "skin"):
        assert after[region][0] == pytest.approx(reference[region][0], abs=0.6)  # means, in Lab units
        assert after[region][1] == pytest.approx(reference[region][1], abs=0.6, rel=0.08)  # spreads
    before = srgb_to_lab(generated)[mask].mean(0)
    assert abs(before[1] - reference["lesion"][0][1]) > 20  # the match moved a* a long way: not a no-op
    # Blending across the border leaves the regions' inner pixels as the hard match has them.
    soft = bench.match_colours(generated, mask, reference, blend=1.5)
    inner = np.zeros_like(mask)
    inner[16:32, 18:30] = True
    assert np.abs(soft[inner].astype(int) - matched[inner].astype(int)).max() <= 1
    # A region the reference lacks keeps its colours; the scale is bounded.
    lesion_only = bench.match_colours(generated, mask, {"lesion": reference["lesion"], "skin": None}, blend=0)
    assert (lesion_only[~mask] == generated[~mask]).all()
    flat = {"lesion": (reference["lesion"][0], np.zeros(3)), "skin": reference["skin"]}
    bounded = bench.colour_statistics(bench.match_colours(generated, mask, flat, blend=0), mask)
    assert (bounded["lesion"][1] > 0.3 * bench.colour_statistics(generated, mask)["lesion"][1]).all()


class _Sample:
    def __init__(self, sample_id, diagnosis, lesion_id):
        from lesionaug.dataset.labels import Labels

        self.id = sample_id
        self.labels = Labels(diagnosis=diagnosis, extra=(("lesion_id", lesion_id),))


def test_the_colour_reference_is_the_real_pair_whose_labels_the_prompt_took(bench):
    train = [_Sample("A", "nv", "IL_1"), _Sample("B", "mel", "IL_2"), _Sample("C", "mel", "IL_3")]
    stats = [{"lesion": (np.zeros(3), np.ones(3)), "skin": (np.zeros(3), np.ones(3))} for _ in train]
    record = {"index": 4, "labels": {"diagnosis": "mel", "extra": {"source_lesion_id": "IL_3"}}}
    assert bench.colour_reference(record, train, stats, seed=0) == 2
    # An unknown lesion: one of the same diagnosis, drawn from (seed, index) and so repeatable.
    unknown = {"index": 4, "labels": {"diagnosis": "mel", "extra": {"source_lesion_id": "IL_9"}}}
    picks = {bench.colour_reference(dict(unknown, index=k), train, stats, seed=0) for k in range(20)}
    assert picks == {1, 2}
    assert bench.colour_reference(unknown, train, stats, seed=0) == bench.colour_reference(unknown, train, stats, 0)
    # No label at all: any pair; a pair without skin is never a reference.
    stats[0] = {"lesion": stats[0]["lesion"], "skin": None}
    anyone = {bench.colour_reference({"index": k, "labels": None}, train, stats, seed=0) for k in range(20)}
    assert anyone == {1, 2}


def test_the_colour_matched_copy_updates_its_digests_and_leaves_the_augmented_folder_alone(bench, tmp_path):
    import hashlib
    import json

    from PIL import Image

    rng = np.random.default_rng(2)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    augmented = tmp_path / "augmented"
    (augmented / "images").mkdir(parents=True)
    records, generated = [], []
    for k in range(2):
        image = _two_region_image(rng, (200, 160, 150), (120, 90, 80), mask)
        path = augmented / "images" / f"SYN_{k}.jpg"
        Image.fromarray(image).save(path, quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(augmented / "images" / f"SYN_{k}_mask.png")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        records.append({"id": f"SYN_{k}", "index": k, "image": f"images/SYN_{k}.jpg", "mask": f"images/SYN_{k}_mask.png",
                        "sha256": {"image": digest}})
        generated.append((np.asarray(Image.open(path).convert("RGB")), mask))
    (augmented / "lesionaug-manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    before = {p: p.read_bytes() for p in augmented.rglob("*") if p.is_file()}
    reference = bench.colour_statistics(_two_region_image(rng, (170, 120, 90), (150, 40, 60), mask), mask)
    out = tmp_path / "matched"
    bench.write_colour_matched(augmented, out, records, generated, [0, 0], [reference], ["ISIC_1"], blend=1.5)
    assert {p: p.read_bytes() for p in augmented.rglob("*") if p.is_file()} == before
    lines = [json.loads(line) for line in (out / "lesionaug-manifest.jsonl").read_text().splitlines()]
    for line in lines:
        written = (out / line["image"]).read_bytes()
        assert line["sha256"]["image"] == hashlib.sha256(written).hexdigest() != records[line["index"]]["sha256"]["image"]
        assert set(line) == set(records[line["index"]])  # the manifest's keys only: it still reads back
    assert json.loads((out / "colour-references.json").read_text()) == {"SYN_0": "ISIC_1", "SYN_1": "ISIC_1"}
    with pytest.raises(SystemExit, match="exists"):
        bench.write_colour_matched(augmented, out, records, generated, [0, 0], [reference], ["ISIC_1"], blend=1.5)
