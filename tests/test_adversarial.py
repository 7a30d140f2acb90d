"""Crafted inputs, kept in one place: each a file an attacker (or a careless copy) could hand lesionaug.

Security: a shard whose manifest or run record names paths outside its folder (traversal, absolute,
symlinked) or whose files were changed; an engine whose graph bytes differ from its card; model
folders with pickle weights. Every path read from a manifest, run record or engine card stays inside
its folder; ``merge`` hashes each shard file against its manifest before linking; an engine's graphs
are hashed against its card when it loads; networks are read from safetensors only unless
``--allow-pickle``. Each is refused with one line and its exit code, nothing written outside.

Dataset input and options: symlinks out of the dataset and looped, a relative file symlink, a 16-bit
soft mask, a camera JPEG turned by its EXIF tag, a huge ``--n``, a deeply nested TOML file.

Options and resources: one exit-code rule in every command (a bad option value is 2, a bad file or
folder 3: ``--n 0``, ``--steps 0``, ``--guidance -1`` and ``--size 7`` were 3 while a bad ``--shard``
was 2); an output made read-only mid-run, a full disk and a name over 255 bytes are exit 3 naming
the path (they were exit 1, "unexpected"); a 50 MB ``--prompt-template`` is refused before planning
(it was copied into every manifest line); an error line stays within two terminal lines however
long the path or value it quotes.

Each test reproduces a case of issue 15 that went wrong before: ``merge`` replaced a file outside
every folder, a tampered engine generated under its old hash, the symlink was hard-linked and
dangled in the output, ``info`` walked ``/`` through a folder link, a 16-bit soft mask was clipped
into a binary one, a rotated JPEG was a "size mismatch", and ``--n 9999999`` planned for hours.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
from pathlib import Path

import layout_fixtures as fx
import numpy as np
import pytest
from augment_runs import augment, trained_run, tree_digest
from augment_runs import invoke as run_invoke
from file_traps import damage
from PIL import Image, ImageOps
from typer.testing import CliRunner

from lesionaug.atomic_files import sha256_file
from lesionaug.cli import app
from lesionaug.dataset.files import mask_pixel_problem, probe_file, read_image, read_mask
from lesionaug.dataset.index import load_dataset
from lesionaug.errors import ConfigError, UsageError
from lesionaug.formats import MANIFEST_NAME, RUN_NAME
from lesionaug.output import disk_space
from lesionaug.output.folder import link_originals, list_originals
from lesionaug.output.manifest import MANIFEST_KEYS, read_manifest
from lesionaug.plan import jobs as plan_jobs
from lesionaug.safe_paths import resolve_inside


def invoke(*args) -> tuple[int, dict | None, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    lines = result.stdout.strip().splitlines()
    envelope = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return result.exit_code, envelope, result.stderr


def paired(root: Path, n: int = 6) -> Path:
    """A ``write_paired`` dataset (images/ and masks/ in lesions/lesions/); returns that base folder."""
    fx.write_paired(root, n=n, labels=True)
    return root / "lesions" / "lesions"


# ---- the one path rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel, why",
    [
        ("../../../somewhere/file", "climbs out with '..'"),
        ("train/../../x.png", "climbs out with '..'"),
        ("train\\..\\..\\x.png", "climbs out with '..'"),
        ("/etc/passwd", "is an absolute path"),
        ("C:\\Windows\\x", "is an absolute path"),
        ("", "is not a file name"),
        (None, "is not a file name"),
        ("a\0b", "NUL"),
        (".", "names the folder itself"),
    ],
)
def test_a_path_that_leaves_its_folder_is_refused_by_its_text(tmp_path, rel, why):
    with pytest.raises(ConfigError, match="manifest line 7") as info:
        resolve_inside(tmp_path, rel, source=tmp_path / MANIFEST_NAME, where="manifest line 7")
    assert why in info.value.message
    assert info.value.path == str(tmp_path / MANIFEST_NAME) and info.value.exit_code == 3


def test_symlinks_may_stay_inside_but_never_lead_out(tmp_path):
    folder, outside = tmp_path / "folder", tmp_path / "outside"
    (folder / "train").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"x")
    (folder / "train" / "a.png").write_bytes(b"a")
    os.symlink(folder / "train" / "a.png", folder / "train" / "alias.png")  # inside: fine
    os.symlink(outside / "secret.png", folder / "train" / "out.png")  # a file leading out
    os.symlink(outside, folder / "escape")  # a folder leading out
    source = folder / MANIFEST_NAME
    assert resolve_inside(folder, "train/a.png", source=source, where="w") == (folder / "train" / "a.png").resolve()
    assert resolve_inside(folder, "train/alias.png", source=source, where="w") == (folder / "train" / "a.png").resolve()
    assert resolve_inside(folder, "train/new.png", source=source, where="w").name == "new.png"  # need not exist
    for rel in ("train/out.png", "escape/secret.png", "escape/not-yet.png"):
        with pytest.raises(ConfigError, match="through a symlink"):
            resolve_inside(folder, rel, source=source, where="w")


def test_a_manifest_line_naming_a_path_outside_is_refused_with_its_line_number(tmp_path):
    lines = [{"id": f"SYN_{k}", "index": k, "image": f"train/{k}.jpg", "mask": f"train/{k}.png"} for k in range(3)]
    lines[1]["mask"] = "../../../somewhere/file"
    text = "".join(json.dumps({**dict.fromkeys(MANIFEST_KEYS), **line}) + "\n" for line in lines)
    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(ConfigError) as info:
        read_manifest(tmp_path / MANIFEST_NAME)
    assert "manifest line 2 (mask) names '../../../somewhere/file'" in info.value.message


# ---- merge, verify, resume and evaluate on crafted augmented folders ------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Both shards of one small plan (originals included), made once; tests edit copies."""
    run = trained_run()
    root = tmp_path_factory.mktemp("secure-shards")
    for i in (0, 1):
        result = augment(run.dataset, root / f"s{i}", "--n", "4", "--batch-size", "2", "--shard", f"{i}/2")
        assert result.exit_code == 0, result.stderr
    return root


def _edit_line(folder: Path, number: int, **changes) -> None:
    manifest = folder / MANIFEST_NAME
    lines = manifest.read_text().splitlines(keepends=True)
    lines[number - 1] = json.dumps({**json.loads(lines[number - 1]), **changes}) + "\n"
    manifest.write_text("".join(lines))


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "somewhere" / "file"
    victim.parent.mkdir(parents=True)
    victim.write_text("outside every folder merge was given")
    return victim


def _craft(case: str, shard: Path, tmp_path: Path, victim: Path) -> str:
    """Damage ``shard`` in one way; returns what the refusal must name."""
    entries = read_manifest(shard / MANIFEST_NAME)
    if case == "traversal":
        # From the shard (tmp_path/a/b/c/s1) the line names the attacker's file tmp_path/a/somewhere/file;
        # from the merge output (tmp_path/o/p/merged) the same text names the victim.
        payload = shard.parents[2] / "somewhere" / "file"
        payload.parent.mkdir(parents=True)
        payload.write_bytes((shard / entries[1]["image"]).read_bytes())
        _edit_line(shard, 2, image="../../../somewhere/file")
        return "manifest line 2 (image)"
    if case == "absolute":
        _edit_line(shard, 1, mask=str(victim))
        return "manifest line 1 (mask)"
    if case == "symlink":
        # Same bytes outside, so only the symlink rule can refuse it (the sha256 matches).
        image = shard / entries[1]["image"]
        outside = tmp_path / "outside-copy.jpg"
        shutil.copyfile(image, outside)
        image.unlink()
        os.symlink(outside, image)
        return "manifest line 2 (image)"
    if case == "tampered":
        mask = shard / entries[0]["mask"]
        data = bytearray(mask.read_bytes())
        data[-20] ^= 0xFF
        mask.write_bytes(bytes(data))
        return "manifest line 1 (mask)"
    record = json.loads((shard / RUN_NAME).read_text())
    record["outputs"]["originals"][3]["path"] = "../../../somewhere/file"
    (shard / RUN_NAME).write_text(json.dumps(record))
    return "run record originals[3]"


@pytest.mark.parametrize("case", ["traversal", "absolute", "symlink", "tampered", "record_traversal"])
def test_merge_refuses_a_crafted_shard_and_writes_nothing(shards, tmp_path, case):
    work = tmp_path / "a" / "b" / "c"
    s0, s1 = shutil.copytree(shards / "s0", work / "s0"), shutil.copytree(shards / "s1", work / "s1")
    merged = tmp_path / "o" / "p" / "merged"
    victim = _victim(tmp_path)
    crafted = s0 if case == "record_traversal" else s1
    needle = _craft(case, crafted, tmp_path, victim)
    before = tree_digest(tmp_path)
    result = run_invoke("merge", merged, s0, s1, "--json", "-q")
    assert result.exit_code == 3, result.stderr
    error = result.envelope["errors"][0]
    assert needle in error["message"]
    assert error["path"] == str(crafted / (RUN_NAME if case == "record_traversal" else MANIFEST_NAME))
    assert not merged.exists()
    assert tree_digest(tmp_path) == before and victim.read_text() == "outside every folder merge was given"


def test_verify_refuses_paths_outside_and_does_not_hash_them(shards, tmp_path):
    folder = shutil.copytree(shards / "s0", tmp_path / "s0")
    _edit_line(folder, 1, image="/etc/hostname")
    result = run_invoke("verify", folder, "--json", "-q")
    assert result.exit_code == 3
    assert "manifest line 1 (image) names '/etc/hostname', which is an absolute path" in result.envelope["errors"][0]["message"]
    record_case = shutil.copytree(shards / "s1", tmp_path / "s1")
    record = json.loads((record_case / RUN_NAME).read_text())
    record["outputs"]["label_files"][0]["path"] = "../s0/" + record["outputs"]["label_files"][0]["path"]
    (record_case / RUN_NAME).write_text(json.dumps(record))
    result = run_invoke("verify", record_case, "--json", "-q")
    assert result.exit_code == 3 and "run record label_files[0]" in result.envelope["errors"][0]["message"]


def test_resume_refuses_a_manifest_that_leads_out_and_removes_nothing(shards, tmp_path):
    run = trained_run()
    out = shutil.copytree(shards / "s0", tmp_path / "out")
    victim = _victim(tmp_path)
    os.symlink(victim.parent, out / "elsewhere")  # a folder symlink planted in the output
    _edit_line(out, 2, image="elsewhere/file")
    before = tree_digest(tmp_path)
    needle = "manifest line 2 (image) names 'elsewhere/file', which leads outside the folder through a symlink"
    resumed = augment(run.dataset, out, "--n", "4", "--batch-size", "2", "--shard", "0/2")
    # A smaller --n with --force removes the dropped job's files: the line must not lead it out.
    forced = augment(run.dataset, out, "--n", "2", "--batch-size", "2", "--shard", "0/2", "--force")
    for result in (resumed, forced):
        assert result.exit_code == 3, result.stderr
        assert needle in result.envelope["errors"][0]["message"]
    assert tree_digest(tmp_path) == before and victim.exists()


def test_evaluate_reads_no_synthetic_pair_from_outside_its_folder(tmp_path):
    from evaluation_fixtures import write_augmented_folder, write_model_card

    from lesionaug.output.synthetic_pairs import read_synthetic_source

    folder = tmp_path / "aug"
    write_augmented_folder(folder, 2, write_model_card(tmp_path / "model", ["train000"]))
    outside = tmp_path / "outside.png"
    shutil.copyfile(folder / "train/images/SYN_0000001.png", outside)
    _edit_line(folder, 1, image=str(outside))
    with pytest.raises(ConfigError) as info:
        read_synthetic_source(folder)
    assert "manifest line 1 (image)" in info.value.message and info.value.exit_code == 3


# ---- a tampered engine ---------------------------------------------------------------------------


def _flip_weight_byte(graph: Path) -> None:
    """Flip one byte in the middle of the graph's largest weight: still a valid graph, other numbers."""
    import onnx

    weight = max(onnx.load(str(graph)).graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    data = bytearray(graph.read_bytes())
    at = data.find(weight)
    assert at >= 0 and len(weight) > 64
    data[at + len(weight) // 2] ^= 0x40
    graph.write_bytes(bytes(data))


def _re_sign(engine: Path) -> None:
    """Write the changed graph's sha256 into the card, as someone covering their tracks would."""
    card = json.loads((engine / "lesionaug.json").read_text())
    digest = sha256_file(engine / "denoiser.onnx")
    card["graphs"]["denoiser"]["sha256"] = digest
    card["graphs"]["denoiser"]["files"]["denoiser.onnx"] = digest
    (engine / "lesionaug.json").write_text(json.dumps(card))


@pytest.fixture
def engine_copy(tmp_path):
    """A copy of the tiny exported pixel engine that a test may damage."""
    from exported_engines import exported_engine

    return Path(shutil.copytree(exported_engine("pixel").engine_dir, tmp_path / "engine"))


def test_a_tampered_engine_is_refused_when_it_loads(engine_copy, demo_isic2018, tmp_path):
    from lesionaug.engine import Engine
    from lesionaug.errors import ModelError

    assert set(Engine.load(engine_copy, "cpu", threads=1).file_digests) == {"denoiser", "text_encoder"}
    graph = engine_copy / "denoiser.onnx"
    before = graph.stat()
    _flip_weight_byte(graph)
    os.utime(graph, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime: the cache is not fooled
    with pytest.raises(ModelError) as info:
        Engine.load(engine_copy, "cpu", threads=1)
    assert info.value.exit_code == 4 and info.value.path == str(graph.resolve())
    assert "denoiser.onnx does not match the sha256 its card records" in info.value.message
    assert "re-export the engine" in info.value.fix
    out = tmp_path / "out"
    result = augment(demo_isic2018, out, "--n", "2", engine=engine_copy)
    assert result.exit_code == 4, result.stderr
    error = result.envelope["errors"][0]
    assert "denoiser.onnx does not match" in error["message"] and "re-export" in error["fix"]
    assert not (out / MANIFEST_NAME).exists() or (out / MANIFEST_NAME).read_text() == ""


def test_resuming_an_output_with_a_tampered_engine_is_refused(engine_copy, demo_isic2018, tmp_path):
    out = tmp_path / "out"
    first = augment(demo_isic2018, out, "--n", "2", engine=engine_copy)
    assert first.exit_code == 0, first.stderr
    written = tree_digest(out)
    _flip_weight_byte(engine_copy / "denoiser.onnx")
    refused = augment(demo_isic2018, out, "--n", "2", engine=engine_copy)
    assert refused.exit_code == 4 and "denoiser.onnx does not match" in refused.envelope["errors"][0]["message"]
    # With the card rewritten to match, the engine's identity (hashed from the files) is another one.
    _re_sign(engine_copy)
    mixed = augment(demo_isic2018, out, "--n", "2", engine=engine_copy)
    assert mixed.exit_code == 3, mixed.stderr
    assert "different augment plan (differs in engine_hash" in mixed.envelope["errors"][0]["message"]
    assert tree_digest(out) == written
    assert run_invoke("verify", out, "--json", "-q").exit_code == 0


def test_graph_hashes_are_cached_by_file_state(engine_copy, tmp_path, monkeypatch):
    from lesionaug.cards import read_card
    from lesionaug.engine import Engine, integrity
    from lesionaug.formats import ENGINE_FORMAT, FILE_HASHES_NAME

    monkeypatch.setenv("LESIONAUG_CACHE", str(tmp_path / "cache"))
    reads: list[str] = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda path: reads.append(Path(path).name) or real(path))
    graphs = read_card(engine_copy, ENGINE_FORMAT)["graphs"]
    first = integrity.verify_engine(engine_copy, graphs)
    assert sorted(reads) == ["denoiser.onnx", "text_encoder.onnx"]
    assert (tmp_path / "cache" / FILE_HASHES_NAME).is_file()
    assert integrity.verify_engine(engine_copy, graphs) == first
    assert Engine.load(engine_copy, "cpu", threads=1).file_digests == first
    assert len(reads) == 2  # the second check and the load read no graph again
    graph = engine_copy / "text_encoder.onnx"
    graph.write_bytes(graph.read_bytes())  # same bytes, rewritten: hashed again, and still valid
    assert integrity.verify_engine(engine_copy, graphs) == first
    assert reads[2:] == ["text_encoder.onnx"]


def test_export_records_the_digests_it_computed_so_the_first_load_reads_nothing(monkeypatch):
    from exported_engines import exported_engine

    from lesionaug.cards import read_card
    from lesionaug.engine import integrity
    from lesionaug.formats import ENGINE_FORMAT

    built = exported_engine("pixel")
    monkeypatch.setenv("LESIONAUG_CACHE", str(built.cache_dir))  # the cache the export wrote to
    monkeypatch.setattr(integrity, "sha256_file", lambda path: pytest.fail(f"{path} was read again"))
    digests = integrity.verify_engine(built.engine_dir, read_card(built.engine_dir, ENGINE_FORMAT)["graphs"])
    assert digests["denoiser"]["denoiser.onnx"] == built.result.graphs["denoiser"]["sha256"]


def test_an_external_data_file_the_card_does_not_record_is_refused(engine_copy, tmp_path):
    from exported_engines import denoiser_with_external_weights

    from lesionaug.engine.integrity import verify_engine
    from lesionaug.errors import ModelError

    denoiser_with_external_weights(tmp_path / "external")
    for name in ("denoiser.onnx", "denoiser.onnx.data"):
        shutil.copyfile(tmp_path / "external" / name, engine_copy / name)
    _re_sign(engine_copy)  # the graph's own hash matches; its weights file is unrecorded
    graphs = json.loads((engine_copy / "lesionaug.json").read_text())["graphs"]
    with pytest.raises(ModelError, match="reads weights from denoiser.onnx.data, which its card does not record"):
        verify_engine(engine_copy, graphs)
    graphs["denoiser"]["files"]["denoiser.onnx.data"] = sha256_file(engine_copy / "denoiser.onnx.data")
    assert set(verify_engine(engine_copy, graphs)["denoiser"]) == {"denoiser.onnx", "denoiser.onnx.data"}
    data = bytearray((engine_copy / "denoiser.onnx.data").read_bytes())
    data[len(data) // 2] ^= 0x01
    (engine_copy / "denoiser.onnx.data").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="denoiser.onnx.data does not match"):
        verify_engine(engine_copy, graphs)
    graphs["denoiser"]["files"]["../lesionaug.json"] = "0" * 64
    with pytest.raises(ConfigError, match=r"graphs.denoiser.files names '../lesionaug.json'"):
        verify_engine(engine_copy, graphs)
    # A graph whose weights are read from outside the engine folder.
    import onnx

    model = onnx.load(str(engine_copy / "denoiser.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere.data"
    onnx.save_model(model, str(engine_copy / "denoiser.onnx"))
    _re_sign(engine_copy)
    graphs = json.loads((engine_copy / "lesionaug.json").read_text())["graphs"]
    with pytest.raises(ConfigError, match=r"denoiser.onnx's external data names '../elsewhere.data', which climbs out"):
        verify_engine(engine_copy, graphs)


# ---- pickle weights ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pickled_model(tmp_path_factory):
    """A tiny lesionaug model folder whose UNet weights are a pickle (``torch.load`` would run it)."""
    import torch
    from safetensors.torch import load_file
    from tiny_models import write_tiny_pixel_model

    model = write_tiny_pixel_model(tmp_path_factory.mktemp("pickled") / "model")
    unet = model / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(unet)), model / "unet" / "diffusion_pytorch_model.bin")
    unet.unlink()
    return model


def test_pickle_weights_are_refused_by_augment_and_export(pickled_model, demo_isic2018, tmp_path):
    needle = "pickle weights (unet/diffusion_pytorch_model.bin) can run code when loaded"
    for args in (
        ["export", pickled_model, "--out", tmp_path / "engine"],
        ["augment", demo_isic2018, "--model", pickled_model, "--out", tmp_path / "out", "--n", 2, "--size", 32],
    ):
        result = run_invoke(*args, "--json", "-q")
        assert result.exit_code == 4, result.stderr
        error = result.envelope["errors"][0]
        assert needle in error["message"] and "--allow-pickle" in error["fix"]
        assert error["path"] == str(pickled_model / "unet" / "diffusion_pytorch_model.bin")
    assert not (tmp_path / "engine").exists() and not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_diffusers_never_falls_back_to_pickles_unless_allowed(pickled_model):
    from lesionaug.cards import read_card
    from lesionaug.errors import ModelError
    from lesionaug.export.parts import load_export_parts
    from lesionaug.formats import MODEL_FORMAT

    card = read_card(pickled_model, MODEL_FORMAT)
    with pytest.raises(ModelError, match="cannot load the UNet"):  # use_safetensors=True: no torch.load
        load_export_parts(pickled_model, card)
    assert load_export_parts(pickled_model, card, allow_pickle=True).unet.config.in_channels == 3


def test_train_refuses_pickles_in_base_and_resume_folders(demo_isic2018, tmp_path):
    from tiny_sd import write_tiny_sd

    from lesionaug.safe_weights import pickle_weight_files, refuse_pickle_weights

    base = write_tiny_sd(tmp_path / "sd")
    (base / "unet" / "extra.ckpt").write_bytes(b"\x80\x04N.")  # beside safetensors: still refused
    os.symlink("..", base / "unet" / "loop")  # a folder link loop ends the walk, it does not hang it
    common = ["--steps", "1", "--base-steps", "1", "--resolution", "32", "--json", "-q"]
    result = run_invoke("train", demo_isic2018, "--base", base, "--out", tmp_path / "a", *common)
    assert result.exit_code == 4 and "pickle weights (unet/extra.ckpt)" in result.envelope["errors"][0]["message"]
    assert not (tmp_path / "a").exists()
    run = tmp_path / "run"
    (run / "checkpoints" / "step-1").mkdir(parents=True)
    (run / "checkpoints" / "step-1" / "state.pt").write_bytes(b"\x80\x04N.")  # the run's own state file
    assert pickle_weight_files(run) == []
    refuse_pickle_weights(run, False)
    assert [p.name for p in pickle_weight_files(run, skip=())] == ["state.pt"]
    (run / "controlnet").mkdir()
    (run / "controlnet" / "diffusion_pytorch_model.pth").write_bytes(b"\x80\x04N.")
    result = run_invoke("train", demo_isic2018, "--out", run, "--resume", *common)
    assert result.exit_code == 4, result.stderr
    error = result.envelope["errors"][0]
    assert "pickle weights (controlnet/diffusion_pytorch_model.pth)" in error["message"]
    assert "--allow-pickle" in error["fix"]
    refuse_pickle_weights(run, True)  # --allow-pickle: the user's call


# ---- symlinks -------------------------------------------------------------------------------------


def test_a_relative_file_symlink_is_placed_as_its_target_not_as_a_dangling_link(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "x.jpg").write_bytes(b"the real bytes")
    data = tmp_path / "data" / "isic"
    (data / "images").mkdir(parents=True)
    os.symlink("../../../pool/x.jpg", data / "images" / "x.jpg")  # relative: right only at this depth
    out = tmp_path / "out" / "one" / "more" / "level"
    rels = list_originals(data, exclude=set())
    assert rels == ["images/x.jpg"]
    items = link_originals([(data / rel, rel) for rel in rels], out)
    placed = out / "images" / "x.jpg"
    assert not placed.is_symlink() and placed.read_bytes() == b"the real bytes"
    assert os.path.samefile(placed, pool / "x.jpg")  # a hard link to the target itself
    assert items[0]["size"] == len(b"the real bytes")
    # An output a broken run left with the dangling link is repaired by the next run.
    placed.unlink()
    os.symlink("../../../pool/x.jpg", placed)
    assert not placed.exists()
    link_originals([(data / rel, rel) for rel in rels], out)
    assert not placed.is_symlink() and placed.read_bytes() == b"the real bytes"


def test_a_folder_symlink_out_of_the_dataset_is_reported_and_not_followed(tmp_path):
    base = paired(tmp_path / "ds")
    outside = tmp_path / "elsewhere"
    fx.write_image(outside / "stranger.jpg", seed=9)
    (outside / "deeper").mkdir()
    fx.write_image(outside / "deeper" / "other.jpg", seed=8)
    os.symlink(outside, base / "images" / "escape")
    os.symlink("/", base / "masks" / "root")  # the case that made `info` walk /proc and /sys
    started = time.perf_counter()
    idx = load_dataset(tmp_path / "ds")
    assert time.perf_counter() - started < 10
    outside_problems = sorted(Path(p.path).name for p in idx.problems if p.code == "symlink_outside")
    assert outside_problems == ["escape", "root"]
    assert idx.damaged == []
    assert {s.id for s in idx.samples} == {f"img{k:02d}" for k in range(6)}  # nothing from outside
    idx.check()  # a reported problem, not a damaged file
    # info says so and exits 0; --strict refuses.
    code, envelope, _ = invoke("info", tmp_path / "ds", "--json", "-q")
    assert code == 0
    assert sorted(p["code"] for p in envelope["data"]["problems"]) == ["symlink_outside", "symlink_outside"]
    code, envelope, _ = invoke("info", tmp_path / "ds", "--strict", "--json", "-q")
    assert code == 3 and "symlink_outside" in envelope["errors"][0]["message"]
    # The originals an augmented copy would link skip them too.
    rels = list_originals(tmp_path / "ds", exclude=set())
    assert not any(part in ("escape", "root") for rel in rels for part in rel.split("/"))
    assert len(rels) == 13  # 6 images, 6 masks, labels.csv


def test_a_folder_symlink_loop_is_a_reported_problem_not_a_fatal_error(tmp_path):
    fx.write_paired(tmp_path, n=3)
    loop = damage(tmp_path, "symlink_loop")  # images/again -> ..
    self_loop = tmp_path / "lesions" / "lesions" / "masks" / "itself"
    os.symlink("itself", self_loop)  # a link to itself: ELOOP when followed
    idx = load_dataset(tmp_path)
    assert sorted((p.code, Path(p.path).name) for p in idx.problems) == [
        ("symlink_loop", "again"),
        ("symlink_loop", "itself"),
    ]
    assert str(loop) in {p.path for p in idx.problems}
    assert idx.damaged == [] and len(idx.usable()) == 3
    idx.check()
    code, envelope, _ = invoke("info", tmp_path, "--json", "-q")
    assert code == 0 and envelope["status"] == "ok"
    assert [p["code"] for p in envelope["data"]["problems"]] == ["symlink_loop", "symlink_loop"]
    # The originals are listed once, without walking round the loop.
    assert sorted(list_originals(tmp_path, exclude=set())) == sorted(
        f"lesions/lesions/{kind}/img{k:02d}{suffix}"
        for k in range(3)
        for kind, suffix in (("images", ".jpg"), ("masks", "_segmentation.png"))
    )


# ---- masks of every bit depth -------------------------------------------------------------------


def _ramp(size=(24, 18)) -> np.ndarray:
    """Values 0..1 rising from left to right: a soft mask."""
    w, h = size
    return np.tile(np.linspace(0.0, 1.0, w), (h, 1))


def test_a_16_bit_soft_mask_is_flagged_like_its_8_bit_twin(tmp_path):
    ramp = _ramp()
    Image.fromarray(np.round(ramp * 255).astype(np.uint8), "L").save(tmp_path / "soft8.png")
    Image.fromarray(np.round(ramp * 65535).astype(np.uint16)).save(tmp_path / "soft16.png")
    assert Image.open(tmp_path / "soft16.png").mode == "I;16"
    eight, sixteen = mask_pixel_problem(tmp_path / "soft8.png"), mask_pixel_problem(tmp_path / "soft16.png")
    assert eight is not None and eight[0] == "non_binary_mask"
    assert sixteen == eight  # the same check, the same message, whatever the bit depth
    # The same threshold too: half of full scale, not 127 of 65535.
    assert np.array_equal(read_mask(tmp_path / "soft16.png"), read_mask(tmp_path / "soft8.png"))
    assert read_mask(tmp_path / "soft16.png").mean() == pytest.approx(0.5, abs=0.05)


def test_16_bit_masks_binarise_at_half_their_range(tmp_path):
    values = np.array([[0, 20000, 32767, 32768, 50000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "levels.png")
    # 20000/65535 is 78/255 and 32767 is 127.5: background; 32768 and up: foreground.
    assert read_mask(tmp_path / "levels.png").tolist() == [[False, False, False, True, True, True]]
    binary = (fx.blob() * 65535).astype(np.uint16)
    Image.fromarray(binary).save(tmp_path / "binary16.png")
    assert np.array_equal(read_mask(tmp_path / "binary16.png"), fx.blob())
    assert mask_pixel_problem(tmp_path / "binary16.png") is None
    zero_one = fx.blob().astype(np.uint16)  # 0/1 masks keep the 0/1 rule
    Image.fromarray(zero_one).save(tmp_path / "01.png")
    assert np.array_equal(read_mask(tmp_path / "01.png"), fx.blob())


def test_info_reports_a_16_bit_soft_mask_in_a_dataset(tmp_path):
    base = paired(tmp_path, n=4)
    soft = np.round(_ramp() * 65535).astype(np.uint16)
    Image.fromarray(soft).save(base / "masks" / "img02_segmentation.png")
    code, envelope, _ = invoke("info", tmp_path, "--json", "-q")
    assert code == 0
    problems = [(p["code"], Path(p["path"]).name) for p in envelope["data"]["problems"]]
    assert problems == [("non_binary_mask", "img02_segmentation.png")]


# ---- EXIF orientation ---------------------------------------------------------------------------


def _sideways_jpeg(path: Path, upright: np.ndarray, orientation: int = 6) -> None:
    """``upright`` stored turned so that EXIF ``orientation`` turns it back, as cameras write it."""
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # undone by ROTATE_270 (tag 6)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, format="JPEG", quality=95, exif=exif.tobytes())


def test_a_camera_jpeg_turned_by_its_exif_tag_is_read_upright_and_matches_its_mask(tmp_path):
    base = paired(tmp_path, n=4)
    w, h = fx.SIZE  # 24 wide, 18 high: red rises to the right, green downwards
    yy, xx = np.mgrid[0:h, 0:w]
    upright = np.stack([40 + 7 * xx, 40 + 9 * yy, np.full_like(xx, 128)], axis=-1).astype(np.uint8)
    image = base / "images" / "img01.jpg"
    _sideways_jpeg(image, upright)
    assert Image.open(image).size == (18, 24)  # stored sideways
    probe = probe_file(image)
    assert (probe.size, probe.orientation) == ((24, 18), 6)
    pixels = read_image(image)
    assert pixels.shape == (18, 24, 3)
    assert np.array_equal(pixels, np.asarray(ImageOps.exif_transpose(Image.open(image)).convert("RGB")))
    assert np.abs(pixels.astype(int) - upright).mean() < 4  # JPEG loss only: it is the right way up
    idx = load_dataset(tmp_path)
    assert not [p for p in idx.problems if p.code == "size_mismatch"]
    assert "img01" in {s.id for s in idx.usable()}
    assert {s.id: s.size for s in idx.samples}["img01"] == (24, 18)
    code, envelope, _ = invoke("info", tmp_path, "--json", "-q")
    assert code == 0 and envelope["data"]["problems"] == []
    assert envelope["data"]["exif_oriented"] == [{"path": str(image), "orientation": 6}]
    human = CliRunner().invoke(app, ["info", str(tmp_path)], catch_exceptions=False)
    assert human.exit_code == 0 and "EXIF orientation" in human.stdout


def test_the_mask_check_runs_on_the_oriented_image(tmp_path):
    base = paired(tmp_path, n=4)
    stored_upright = np.full((fx.SIZE[1], fx.SIZE[0], 3), 128, np.uint8)
    # Tag 6 on an image stored 24x18 shows it 18x24: now it really differs from its 24x18 mask.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored_upright).save(base / "images" / "img02.jpg", format="JPEG", exif=exif.tobytes())
    idx = load_dataset(tmp_path)
    mismatch = [p for p in idx.problems if p.code == "size_mismatch"]
    assert [p.sample_id for p in mismatch] == ["img02"]
    assert "18x24" in mismatch[0].message


# ---- a huge --n ---------------------------------------------------------------------------------


@pytest.fixture
def counted_jobs(monkeypatch):
    """Fails the test once more than 1,000 jobs are made: a refusal must come before planning."""
    made = {"n": 0}
    real = plan_jobs.make_job

    def make_job(*args, **kwargs):
        made["n"] += 1
        if made["n"] > 1000:
            raise AssertionError("planned more than 1,000 jobs before refusing")
        return real(*args, **kwargs)

    monkeypatch.setattr(plan_jobs, "make_job", make_job)
    return made


def test_a_huge_n_is_refused_for_disk_space_before_planning(tmp_path, monkeypatch, counted_jobs):
    paired(tmp_path / "ds", n=8)
    fitted = []
    monkeypatch.setattr("lesionaug.augment.preparation.fit_dataset_shape_model", lambda *a, **k: fitted.append(1))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100 << 30, 90 << 30, 10 << 30))
    out = tmp_path / "out"
    started = time.perf_counter()
    code, envelope, _ = invoke(
        "augment", tmp_path / "ds", "--n", 9999999, "--size", 64, "--out", out, "--model", tmp_path / "none", "--json"
    )
    assert time.perf_counter() - started < 30
    assert code == 3
    assert "not enough free disk space" in envelope["errors"][0]["message"]
    assert counted_jobs["n"] == 0 and fitted == [] and not out.exists()


def test_a_huge_n_is_refused_for_memory_before_planning(tmp_path, monkeypatch, counted_jobs):
    paired(tmp_path / "ds", n=8)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 60, 0, 1 << 60))
    monkeypatch.setattr(disk_space, "available_memory", lambda: 4 << 30)
    out = tmp_path / "out"
    code, envelope, _ = invoke(
        "augment", tmp_path / "ds", "--n", 9999999, "--size", 64, "--out", out, "--model", tmp_path / "none", "--json"
    )
    assert code == 3
    message = envelope["errors"][0]["message"]
    # 9,999,999 pairs x 8 KiB = 78,125.0 MiB (less 8 KiB), + 512 MiB margin = 78,637.0 MiB, 4,096 MiB available.
    assert message == (
        "not enough memory: 9,999,999 pairs written by one run keep about 78637.0 MiB in memory, "
        "4096.0 MiB available"
    )
    assert counted_jobs["n"] == 0 and not out.exists()
    # A dry run lists every job: its own memory check comes before planning too.
    code, envelope, _ = invoke("augment", tmp_path / "ds", "--n", 9999999, "--size", 64, "--dry-run", "--json")
    assert code == 3 and "9,999,999 jobs listed by a dry run" in envelope["errors"][0]["message"]
    assert counted_jobs["n"] == 0


# ---- a deeply nested or huge config file --------------------------------------------------------


@pytest.mark.parametrize("value", ["[" * 3000 + "]" * 3000, "{a = " * 3000 + "1" + "}" * 3000])
def test_a_deeply_nested_toml_file_is_exit_3_not_a_recursion_error(tmp_path, value):
    config = tmp_path / "deep.toml"
    config.write_text(f"n = {value}\n")
    code, envelope, _ = invoke("augment", tmp_path, "--config", config, "--json", "-q")
    assert code == 3
    assert envelope["errors"][0]["message"] == "config file nests arrays or tables 3000 deep, over the 32 allowed"
    assert envelope["errors"][0]["path"] == str(config)


def test_the_nesting_bound_counts_brackets_only_outside_strings_and_comments(tmp_path):
    from lesionaug.cli.config_file import MAX_TOML_DEPTH, command_entries, read_toml, toml_nesting_depth

    deep_text = "[" * 40 + "]" * 40
    assert toml_nesting_depth(f"n = {deep_text}") == 40
    assert toml_nesting_depth('a = [[1, 2], [3]]\n[augment]\nb = {c = [[1]]}') == 3
    config = tmp_path / "ok.toml"
    # Brackets in a basic string (with an escaped quote), a literal string, a multi-line string and a comment.
    config.write_text(
        f'prompt-template = "a \\"{deep_text}\\" {{diagnosis}}"  # {deep_text}\n'
        f"seed = 3\n[augment]\nprefix = '{deep_text}'\nlabels = [\"\"\"{deep_text}\"\"\"]\n"
    )
    keys = {"prompt_template", "seed", "prefix", "labels"}
    options = command_entries(read_toml(config), "augment", keys, path=config)
    assert options["seed"] == 3 and options["prefix"] == deep_text and options["labels"] == [deep_text]
    assert toml_nesting_depth(config.read_text()) == 1 < MAX_TOML_DEPTH
    huge = tmp_path / "huge.toml"
    huge.write_text('prompt-template = "' + "x" * (2 << 20) + ' {diagnosis}"\n')  # the 50 MB template, in small
    with pytest.raises(ConfigError, match="over the 1,048,576 a config file may hold"):
        read_toml(huge)


# ---- end to end: augment on a dataset with a symlinked original and a mismatched training pair ------


@pytest.mark.slow
def test_augment_places_symlinked_originals_reports_skipped_pairs_and_reruns(tmp_path):
    from lesionaug.demo.write import write_demo_dataset

    engine = trained_run().engine_dir
    data = write_demo_dataset(tmp_path / "data" / "isic", n=24, layout="isic2018", size=64, seed=0)
    images = data / "ISIC2018_Task1-2_Training_Input"
    masks = data / "ISIC2018_Task1_Training_GroundTruth"
    linked = sorted(images.glob("ISIC_*.jpg"))[0]
    pool = tmp_path / "pool"
    pool.mkdir()
    shutil.move(linked, pool / linked.name)
    os.symlink(f"../../../pool/{linked.name}", linked)  # relative, right only at the dataset's depth
    mismatched = sorted(masks.glob("ISIC_*_segmentation.png"))[1]
    Image.open(mismatched).resize((32, 32)).save(mismatched)  # a training pair the index leaves out
    out = tmp_path / "elsewhere" / "at" / "another" / "depth"

    first = augment(data, out, "--n", "2", engine=engine)
    assert first.exit_code == 0, first.stderr
    result = first.envelope["data"]
    assert (result["n_generated"], result["n_training_skipped"], result["training_skipped"]) == (
        2, 1, {"size_mismatch": 1}
    )
    assert result["link"] == "hard"
    placed = out / linked.relative_to(data)
    assert not placed.is_symlink() and placed.read_bytes() == (pool / linked.name).read_bytes()
    assert os.path.samefile(placed, pool / linked.name)  # a hard link to the link's target

    again = augment(data, out, "--n", "2", engine=engine)  # the rerun used to fail the same way
    assert again.exit_code == 0, again.stderr
    assert again.envelope["data"]["n_skipped_existing"] == 2

    # The same output rerun with --link copy: its originals become copies (editing them edits
    # nothing else); without -q the left-out pair is said on stderr, in one line.
    loud = CliRunner().invoke(
        app, ["augment", str(data), "--out", str(out), "--model", str(engine), "--n", "2", "--link", "copy",
              "--size", "64", "--steps", "2", "--guidance", "1.0", "--json"], catch_exceptions=False,
    )
    assert loud.exit_code == 0, loud.stderr
    said = " ".join(loud.stderr.split())  # Rich wraps a long line at the console's width
    assert said.count("left out") == 1 and "warning: 1 training pair(s) left out (size_mismatch 1)" in said
    assert not os.path.samefile(placed, pool / linked.name) and placed.read_bytes() == (pool / linked.name).read_bytes()
    other = sorted(images.glob("ISIC_*.jpg"))[1]
    assert not os.path.samefile(other, out / other.relative_to(data))
    verify = invoke("verify", out, "--json", "-q")
    assert verify[0] == 0 and verify[1]["data"]["ok"] is True


def test_link_reflink_is_refused_before_anything_is_generated(tmp_path, monkeypatch):
    from lesionaug import atomic_files

    class NoClones:  # ext4 and tmpfs answer FICLONE like this
        @staticmethod
        def ioctl(fd, request, arg):
            raise OSError(95, "Operation not supported")

    monkeypatch.setattr(atomic_files, "fcntl", NoClones)
    paired(tmp_path / "ds", n=8)
    out = tmp_path / "out"
    code, envelope, _ = invoke(
        "augment", tmp_path / "ds", "--n", 2, "--size", 64, "--out", out, "--model", tmp_path / "none",
        "--link", "reflink", "--json",
    )
    assert code == 3
    assert "--link reflink: the output's filesystem cannot clone" in envelope["errors"][0]["message"]
    assert not out.exists()  # the folder it made for the run is gone again
    code, envelope, _ = invoke("augment", tmp_path / "ds", "--n", 2, "--size", 64, "--link", "soft", "--json")
    assert code == 2 and "'soft' is not one of 'hard', 'copy', 'reflink'" in envelope["errors"][0]["message"]


def test_an_original_named_like_a_synthetic_pair_is_never_replaced(tmp_path, counted_jobs):
    base = paired(tmp_path / "ds", n=8)
    fx.write_image(base / "images" / "SYN_0000002.jpg", seed=3)
    fx.write_mask(base / "masks" / "SYN_0000002_segmentation.png", fx.blob(seed=3))
    common = ("--size", 64, "--model", tmp_path / "none", "--json")
    code, envelope, _ = invoke("augment", tmp_path / "ds", "--n", 3, "--out", tmp_path / "a", *common)
    assert code == 3
    assert envelope["errors"][0]["message"] == (
        "synthetic pair SYN_0000002 would replace the original lesions/lesions/images/SYN_0000002.jpg"
    )
    # Shard 0/2 of 3 jobs holds SYN_0000001 and SYN_0000003: no collision, so it gets as far as the model.
    code, envelope, _ = invoke("augment", tmp_path / "ds", "--n", 3, "--shard", "0/2", "--out", tmp_path / "b", *common)
    assert "would replace" not in envelope["errors"][0]["message"]
    assert counted_jobs["n"] < 10  # the check looks up the jobs the originals name, it does not walk the plan


# ---- one exit-code rule: a bad option value is 2, a bad file or folder 3 --------------------------

BAD_VALUES = [
    ("augment", ["--n", 0], "--n must be between 1 and"),
    ("augment", ["--denoise-steps", 0], "--denoise-steps must be 1..1000, got 0"),
    ("augment", ["--guidance", -1], "--guidance must be >= 1.0, got -1.0"),
    ("augment", ["--size", 7], "--size must be between 8 and 8192 pixels per side, got 7x7"),
    ("augment", ["--shard", "3/2"], "shard 3/2 does not exist"),
    ("augment", ["--batch-size", 0], "--batch-size must be 1..256, got 0"),
    ("augment", ["--workers", 0], "--workers must be 1..64, got 0"),
    ("augment", ["--control-scale", -1], "--control-scale must be >= 0"),
    ("augment", ["--scheduler", "heun"], "'heun' is not one of"),
    ("augment", ["--prefix", "../x"], "--prefix '../x' is not a safe file-name prefix"),
    ("augment", ["--label-mix", "mel=0"], "weight of 'mel' must be a positive number"),
    ("augment", ["--prompt-template", "{colour}"], "--prompt-template has unknown field(s) colour"),
    ("train", ["--batch-size", 0], "--batch-size must be a positive integer, not 0"),
    ("train", ["--train-steps", -1], "--train-steps must be a non-negative integer, not -1"),
    ("train", ["--prompt-dropout", 1.5], "--prompt-dropout must be in [0, 1)"),
    ("train", ["--mixed-precision", "fp8"], "'fp8' is not one of"),
    ("evaluate", ["--repeats", 0], "--repeats must be at least 1, got 0"),
    ("evaluate", ["--real-fraction", 2], "--real-fraction must be in (0, 1], got 2.0"),
    ("evaluate", ["--seg-epochs", 0], "epochs must be at least 1, got 0"),
    ("evaluate", ["--seg-arch", "resnet"], "'resnet' is not one of"),
    ("masks", ["--n", 0], "--n must be between 1 and"),
    ("masks", ["--size", 4], "--size must be between 8 and 8192"),
    ("masks", ["--mask-source", "ellipse"], "'ellipse' is not one of"),
    ("quality", ["--denoise-steps", 0], "--denoise-steps must be 1..1000, got 0"),
    ("quality", ["--guidance", 0.5], "--guidance must be >= 1.0, got 0.5"),
    ("quality", ["--split", "holdout"], "'holdout' is not one of"),
    ("quality", ["--limit", 0], "--limit must be at least 1, got 0"),
    ("demo-data", ["--layout", "kaggle"], "'kaggle' is not one of"),
    ("demo-data", ["--n", 0], "Invalid value for '--n'"),
    ("demo-data", ["--size", 7], "32 <= size <= 2048 (got n=40, size=7)"),
]


def command_line(command: str, dataset: Path, tmp_path: Path) -> list:
    """A command line that runs (or would, given a model) but for the option under test."""
    out = ["--out", tmp_path / "out"]
    return {
        "augment": [dataset, *out, "--n", 2, "--size", 64, "--model", tmp_path / "no-model"],
        "train": [dataset, *out, "--model-size", "tiny"],
        "evaluate": [dataset, "--augmented", dataset, *out],
        "masks": [dataset, *out, "--n", 3, "--size", 64],
        "quality": [dataset, "--model", tmp_path, *out],
        "demo-data": ["--out", tmp_path / "out"],
    }[command]


@pytest.mark.parametrize("command, args, message", BAD_VALUES, ids=[f"{c}{a[0]}" for c, a, _ in BAD_VALUES])
def test_a_bad_option_value_is_exit_2_in_every_command(demo_isic2018, tmp_path, command, args, message):
    code, envelope, stderr = invoke(command, *command_line(command, demo_isic2018, tmp_path), *args, "--json")
    assert code == 2, stderr
    if envelope is None:  # a range or choice click checks while parsing (main() adds the envelope)
        assert message in stderr
    else:
        assert message in envelope["errors"][0]["message"]
        assert envelope["errors"][0]["code"] == "usage" and envelope["exit_code"] == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command, damage, message",
    [
        ("augment", lambda data, tmp: [tmp / "missing", "--out", tmp / "out", "--n", 2], "does not exist"),
        ("masks", lambda data, tmp: [data, "--out", data / "m", "--n", 3], "inside the dataset"),
        ("demo-data", lambda data, tmp: ["--out", (tmp / "file.txt", (tmp / "file.txt").write_text("x"))[0]], "is a file"),
        ("augment", lambda data, tmp: [data, "--config", tmp / "none.toml"], "config file not found"),
    ],
)
def test_a_bad_file_or_folder_is_exit_3(demo_isic2018, tmp_path, command, damage, message):
    code, envelope, _ = invoke(command, *damage(demo_isic2018, tmp_path), "--json")
    assert code == 3 and message in envelope["errors"][0]["message"]


def test_a_value_in_a_config_file_is_judged_like_the_option(demo_isic2018, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("n = 0\nsize = 64\n")
    code, envelope, _ = invoke("augment", demo_isic2018, "--config", config, "--dry-run", "--json")
    assert code == 2 and "--n must be between 1 and" in envelope["errors"][0]["message"]
    config.write_text('n = "many"\n')  # not a number: the file itself is wrong (exit 3, naming it)
    code, envelope, _ = invoke("augment", demo_isic2018, "--config", config, "--dry-run", "--json")
    assert code == 3 and envelope["errors"][0]["path"] == str(config)
    assert envelope["errors"][0]["message"].startswith("bad value for 'n':")


# ---- resources: OS errors on the output, long names, huge option values, long error lines ---------


def _writable_again(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def test_an_output_made_read_only_mid_run_is_exit_3_naming_the_path_and_resumes(demo_isic2018, tmp_path, monkeypatch):
    """The first pair is written; then the output turns read-only. Without root, chmod does it for
    real (EACCES); root writes through chmod, so the OS refusal is raised as a read-only
    filesystem raises it (EROFS). Either way the run stops with exit 3 naming a path in the output,
    not exit 5 pair by pair or exit 1 "unexpected", and once writable again the same command resumes."""
    from exported_engines import exported_engine

    from lesionaug.output import pair_writer

    engine = exported_engine("pixel").engine_dir
    out = tmp_path / "out"
    real = pair_writer.write_pair
    calls: list[str] = []
    lock = threading.Lock()
    as_root = os.geteuid() == 0

    def write_pair(out_dir, layout, stamp, record, image, mask, **kwargs):
        with lock:
            calls.append(record.id)
            first = len(calls) == 1
            if len(calls) == 2 and not as_root:
                for path in [out, *out.rglob("*")]:
                    if path.is_dir():
                        path.chmod(0o555)
        if first or not as_root:
            return real(out_dir, layout, stamp, record, image, mask, **kwargs)
        target = Path(out_dir) / layout.image_path(record.id)
        raise OSError(errno.EROFS, "Read-only file system", str(target))

    monkeypatch.setattr(pair_writer, "write_pair", write_pair)
    try:
        stopped = augment(demo_isic2018, out, "--n", 6, "--batch-size", 1, "--workers", 1, engine=engine)
    finally:
        _writable_again(out)
    assert stopped.exit_code == 3, stopped.stderr
    error = stopped.envelope["errors"][0]
    assert error["code"] == "resource" and error["path"].startswith(str(out))
    assert error["message"] == ("Read-only file system (EROFS)" if as_root else "Permission denied (EACCES)")
    assert len(read_manifest(out / MANIFEST_NAME)) == 1  # the pair written before stays, recorded

    monkeypatch.setattr(pair_writer, "write_pair", real)
    resumed = augment(demo_isic2018, out, "--n", 6, "--batch-size", 1, "--workers", 1, engine=engine)
    assert resumed.exit_code == 0, resumed.stderr
    assert (resumed.envelope["data"]["n_skipped_existing"], resumed.envelope["data"]["n_generated"]) == (1, 5)


def test_a_full_disk_names_the_file_being_written(tmp_path, monkeypatch):
    """write() and fsync() on a full disk raise an OSError without a file name: the writers add it."""
    from lesionaug.atomic_files import write_bytes_atomic
    from lesionaug.errors import ResourceError
    from lesionaug.output.manifest import ManifestAppender

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        write_bytes_atomic(tmp_path / "SYN_0000001.png", b"png")
    assert info.value.filename == str(tmp_path / "SYN_0000001.png") and list(tmp_path.iterdir()) == []
    line = ResourceError.from_os_error(info.value).one_line()
    assert line == f"{tmp_path / 'SYN_0000001.png'}: No space left on device (ENOSPC) -- free disk space (or " \
        "choose an output folder on another disk), then rerun"
    with ManifestAppender(tmp_path / MANIFEST_NAME) as manifest, pytest.raises(OSError) as info:
        manifest.append({key: None for key in MANIFEST_KEYS})
    assert info.value.filename == str(tmp_path / MANIFEST_NAME)


@pytest.mark.parametrize(
    "command, args",
    [
        ("masks", lambda data, long: [data, "--out", long, "--n", 3, "--size", 64]),
        ("demo-data", lambda data, long: ["--out", long, "--n", 4, "--size", 32]),
        ("info", lambda data, long: [long]),
        ("train", lambda data, long: [data, "--out", long / "model", "--model-size", "tiny"]),
    ],
)
def test_a_file_name_over_255_bytes_is_exit_3_naming_it(demo_isic2018, tmp_path, command, args):
    long = tmp_path / ("n" * 300)
    code, envelope, stderr = invoke(command, *args(demo_isic2018, long), "--json", "-q")
    assert code == 3, stderr
    error = envelope["errors"][0]
    assert error["code"] == "resource" and error["message"] == "File name too long (ENAMETOOLONG)"
    assert error["path"].startswith(str(long)) and "255 bytes" in error["fix"]
    [line] = stderr.strip().splitlines()
    assert len(line) <= 300 and "..." in line


def test_a_50_mb_prompt_template_is_a_usage_error_before_anything_runs(demo_isic2018, tmp_path, counted_jobs):
    from lesionaug.plan.jobs import PlanConfig
    from lesionaug.plan.prompts import MAX_TEMPLATE_CHARS

    template = "a dermoscopic image of {diagnosis} " + "x" * (50 << 20)
    for command in ("augment", "train"):
        code, envelope, stderr = invoke(command, *command_line(command, demo_isic2018, tmp_path),
                                        "--prompt-template", template, "--json")
        assert code == 2
        assert envelope["errors"][0]["message"] == (
            f"--prompt-template is {len(template):,} characters long, over the 4,096 an option value may hold"
        )
        assert len(stderr) < 400 and not (tmp_path / "out").exists()
    assert counted_jobs["n"] == 0
    # In a config file (small enough to be read) the same bound names the file.
    config = tmp_path / "run.toml"
    config.write_text(f'prompt-template = "{template[:5000]}"\n')
    code, envelope, _ = invoke("augment", demo_isic2018, "--n", 2, "--size", 64, "--dry-run", "--config", config, "--json")
    assert code == 2 and envelope["errors"][0]["path"] == str(config)
    assert envelope["errors"][0]["message"].startswith("--prompt-template is 5,000 characters long")
    # The library itself refuses one: a template is copied into every manifest line.
    with pytest.raises(UsageError, match="over the 4,096 a template may hold"):
        PlanConfig(n=1, template=template[: MAX_TEMPLATE_CHARS + 1])


def test_a_very_long_bad_path_or_value_prints_a_short_error_line(tmp_path, demo_isic2018):
    from lesionaug.errors import MAX_ERROR_LINE

    deep = tmp_path / ("a/" * 1500) / "dataset"  # 3,000+ characters, each name short: it just is not there
    result = CliRunner().invoke(app, ["info", str(deep), "--json"], catch_exceptions=False)
    assert result.exit_code == 3
    [line] = result.stderr.strip().splitlines()
    assert len(line) <= MAX_ERROR_LINE and line.startswith(f"lesionaug info: error: {str(tmp_path)[:20]}")
    assert "..." in line and "a/a/dataset: " in line and line.endswith("check the path")
    assert json.loads(result.stdout)["errors"][0]["path"] == str(deep)  # the envelope keeps it whole
    prefix = "p" * 3000 + "/"
    code, envelope, stderr = invoke("augment", demo_isic2018, "--n", 2, "--size", 64, "--prefix", prefix, "--dry-run",
                                    "--json")
    [line] = stderr.strip().splitlines()
    assert code == 2 and len(line) <= MAX_ERROR_LINE
    assert line.startswith("lesionaug augment: error: --prefix 'ppp") and "p/' is not a safe" in line
    assert prefix in envelope["errors"][0]["message"]
