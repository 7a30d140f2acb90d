"""`lesionaug augment --dry-run`: the plan without a model; option errors; the generation hand-off."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from lesionaug.augment.options import AugmentOptions
from lesionaug.cli import app
from lesionaug.dataset.labels import DIAGNOSES
from lesionaug.plan.jobs import PlanConfig, Shard

JOB_KEYS = {"index", "id", "prompt", "labels", "mask_seed", "noise_seed"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def plan_of(*args: str) -> dict:
    result = invoke("augment", *args, "--dry-run", "--json", "-q")
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout.strip().splitlines()[-1])
    assert envelope["command"] == "augment" and envelope["status"] == "ok"
    return envelope["data"]


def error_of(*args: str) -> tuple[int, dict]:
    result = invoke("augment", *args, "--json", "-q")
    envelope = json.loads(result.stdout.strip().splitlines()[-1])
    assert envelope["status"] == "error" and len(envelope["errors"]) == 1
    return result.exit_code, envelope["errors"][0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from lesionaug.demo.write import write_demo_dataset

    return str(write_demo_dataset(tmp_path_factory.mktemp("augment") / "isic", n=40, size=64, seed=2))


def archive(demo: str) -> tuple[str, str]:
    """``--labels`` with the demo's archive metadata: the Task 1 images' diagnoses, as on real data."""
    return ("--labels", f"{demo}/isic_archive_metadata.csv")


@pytest.fixture(scope="module")
def plan30(demo):
    return plan_of(demo, "--n", "30", "--seed", "5", *archive(demo))


def test_dry_run_json_carries_the_plan(plan30):
    assert len(plan30["plan_hash"]) == 64
    jobs = plan30["jobs"]
    assert [job["index"] for job in jobs] == list(range(30))
    assert all(JOB_KEYS <= set(job) for job in jobs)
    assert jobs[0]["id"] == "SYN_0000001" and jobs[-1]["id"] == "SYN_0000030"
    assert all(job["prompt"].startswith("a dermoscopic image of") for job in jobs)
    assert all(0 <= job["noise_seed"] < 2**63 for job in jobs)
    assert sum(plan30["label_counts"]["diagnosis"].values()) == 30
    stats = plan30["mask_statistics"]
    lo, hi = stats["training_area_range"]
    assert lo - 0.02 <= stats["area_fraction"]["min"] <= stats["area_fraction"]["max"] <= hi + 0.02
    assert sum(stats["shape_groups"].values()) == 30


def test_the_plan_is_reproducible_and_job_k_ignores_n(demo, plan30):
    again = plan_of(demo, "--n", "30", "--seed", "5", *archive(demo))
    assert again["plan_hash"] == plan30["plan_hash"] and again["jobs"] == plan30["jobs"]
    shorter = plan_of(demo, "--n", "12", "--seed", "5", *archive(demo))
    assert shorter["jobs"] == plan30["jobs"][:12]
    assert shorter["plan_hash"] != plan30["plan_hash"]
    other_seed = plan_of(demo, "--n", "30", "--seed", "6", *archive(demo))
    assert other_seed["jobs"][0]["noise_seed"] != plan30["jobs"][0]["noise_seed"]


def test_shards_cover_the_plan(demo, plan30):
    shards = [plan_of(demo, "--n", "30", "--seed", "5", "--shard", f"{i}/3", *archive(demo)) for i in range(3)]
    assert {s["plan_hash"] for s in shards} == {plan30["plan_hash"]}
    union = sorted((job for s in shards for job in s["jobs"]), key=lambda j: j["index"])
    assert union == plan30["jobs"]
    assert shards[1]["shard"] == "1/3" and all(job["index"] % 3 == 1 for job in shards[1]["jobs"])


def test_diagnosis_weights_template_prefix_and_source(demo):
    plan = plan_of(
        demo,
        "--n", "20",
        "--diagnosis", "mel=1",
        *archive(demo),
        "--prompt-template", "{diagnosis} {attributes}",
        "--prefix", "GEN",
        "--mask-source", "mixed",
        "--size", "96x64",
    )  # fmt: skip
    assert plan["label_counts"]["diagnosis"] == {"mel": 20}
    assert all(job["prompt"].startswith("melanoma") for job in plan["jobs"])
    assert plan["jobs"][0]["id"] == "GEN0000001"
    assert set(plan["label_counts"]["mask_source"]) <= {"model", "real"}
    assert plan["config"]["size"] == [96, 64]


def test_default_size_is_the_datasets_most_common_image_size_never_the_models(demo, tmp_path):
    from PIL import Image

    assert plan_of(demo, "--n", "3")["config"]["size"] == [64, 64]  # the demo's images are 64 px
    # A model's resolution does not choose the size (it is not even read by a dry run).
    engine = tmp_path / "engine"
    engine.mkdir()
    (engine / "lesionaug.json").write_text(json.dumps({"format": "lesionaug.engine/1", "model": {"resolution": 128}}))
    assert plan_of(demo, "--n", "3", "--model", str(engine))["config"]["size"] == [64, 64]
    assert plan_of(demo, "--n", "3", "--model", str(engine), "--size", "80x64")["config"]["size"] == [80, 64]
    # Mixed sizes: the commonest wins (3 of 5 images are 96x72 here).
    from lesionaug.demo.write import write_demo_dataset

    mixed = write_demo_dataset(tmp_path / "mixed", n=5, size=64, seed=1, layout="paired")
    images = sorted(mixed.glob("*/images/*.png"))
    assert len(images) == 5
    for path in images[:3]:
        for file in (path, path.parent.parent / "masks" / path.name):
            Image.open(file).resize((96, 72), Image.NEAREST).save(file)
    assert plan_of(str(mixed), "--n", "2")["config"]["size"] == [96, 72]


def test_resolution_note_says_when_the_generator_works_below_the_pair_size():
    from lesionaug.augment.output_size import resolution_note

    assert resolution_note((128, 128), (128, 128)) is None and resolution_note((256, 256), (128, 128)) is None
    note = resolution_note((64, 64), (128, 96))
    assert note.startswith("the generator makes 64x64 images and the pairs are 128x96") and "\n" not in note


def test_a_joined_label_table_changes_the_fingerprint_and_the_prompts(demo, plan30):
    bare = plan_of(demo, "--n", "30", "--seed", "5")
    assert bare["dataset_fingerprint"] != plan30["dataset_fingerprint"]
    assert bare["plan_hash"] != plan30["plan_hash"]
    assert set(bare["label_counts"]["diagnosis"]) == {"none"}
    assert "none" not in plan30["label_counts"]["diagnosis"]
    for job in plan30["jobs"]:
        assert job["prompt"].startswith(f"a dermoscopic image of {DIAGNOSES[job['labels']['diagnosis']]}")


def test_balanced_labels(demo):
    plan = plan_of(demo, "--n", "60", "--label-mix", "balanced", *archive(demo))
    counts = plan["label_counts"]["diagnosis"]
    assert set(counts) == set(plan["training_diagnoses"])


def test_human_dry_run_shows_the_plan(demo):
    result = invoke("augment", demo, "--n", "5", "--dry-run", "-q")
    assert result.exit_code == 0, result.output
    assert "SYN_0000005" in result.stdout and "what would be generated" in result.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--diagnosis", "xyz=1", "--dry-run"], 2, "unknown diagnosis code(s) xyz; known codes: mel"),
        (["--diagnosis", "mel=-1", "--dry-run"], 2, "positive"),
        (["--label-mix", "balanced", "--diagnosis", "mel=1", "--dry-run"], 2, "both choose"),
        (["--labels", "balanced", "--dry-run"], 2, "--labels now names a label table"),
        (["--labels", "/nonexistent/metadata.csv", "--dry-run"], 3, "label table is not found"),
        (["--shard", "3/3", "--dry-run"], 2, "shard 3/3 does not exist"),
        (["--shard", "x", "--dry-run"], 2, "malformed shard"),
        (["--prompt-template", "{color}", "--dry-run"], 2, "unknown field"),
        (["--mask-source", "ellipse", "--dry-run"], 2, "'ellipse' is not one of 'model', 'real', 'mixed'"),
        (["--size", "0", "--dry-run"], 2, "size must be"),
    ],
)
def test_option_errors_are_one_line(demo, args, code, message):
    exit_code, error = error_of(demo, "--n", "5", *args)
    assert exit_code == code
    assert message in error["message"]


def test_a_diagnosis_missing_from_training_lists_the_known_ones(demo):
    exit_code, error = error_of(demo, "--n", "5", "--diagnosis", "scc=1", "--dry-run", *archive(demo))
    assert exit_code == 3
    assert "scc not in the training split; known:" in error["message"]


def test_without_a_diagnosis_in_training_weights_are_refused_naming_labels(demo):
    # The demo's Task 1 images have no diagnosis of their own (its Task 3 rows name other ids).
    exit_code, error = error_of(demo, "--n", "5", "--diagnosis", "mel=1", "--dry-run")
    assert exit_code == 3
    assert "the training split has none" in error["message"] and "--labels FILE" in error["fix"]


def test_without_dry_run_the_options_go_to_run_augment(demo, monkeypatch):
    received = {}

    def run_augment(options, reporter):
        received["options"] = options
        return {"generated": options.plan.n}

    monkeypatch.setattr("lesionaug.cli.augment.run_augment", run_augment)
    result = invoke("augment", demo, "--n", "7", "--seed", "3", "--shard", "0/2", "--json", "-q")
    assert result.exit_code == 0, result.output
    options = received["options"]
    assert isinstance(options, AugmentOptions) and not options.dry_run
    # No --size: marked, and settled from the dataset's images once run_augment indexes it.
    assert options.size_from_dataset and options.plan == PlanConfig(n=7, seed=3)
    assert options.shard == Shard(0, 2)
    assert json.loads(result.stdout)["data"] == {"generated": 7}


def test_a_dry_run_without_a_model_imports_no_torch_on_a_machine_without_nvidia(demo):
    """The default size needs the default model's device; without a visible NVIDIA driver that is
    decided without importing torch (seconds), so a dry run stays a quick look."""
    import subprocess

    import lesionaug.augment.model_choice as model_source

    if model_source.Path("/dev/nvidiactl").exists() or model_source.shutil.which("nvidia-smi"):
        pytest.skip("an NVIDIA driver is visible here: torch decides the device")
    probe = (
        "import sys\n"
        "from lesionaug.cli import main\n"
        "try:\n"
        f"    main(['augment', {demo!r}, '--n', '3', '--dry-run', '--json', '-q'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "print([m for m in ('torch', 'diffusers', 'onnxruntime', 'transformers') if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_training_pairs_left_out_are_counted_by_reason_and_said_in_one_line(tmp_path):
    from pathlib import Path

    import layout_fixtures as fx

    train = sorted(fx.write_isic2018(tmp_path, n={"Training": 6, "Validation": 2, "Test": 2}).splits["train"])
    masks = tmp_path / "ISIC2018_Task1_Training_GroundTruth"
    fx.write_mask(masks / f"{train[0]}_segmentation.png", fx.blob((10, 10)))  # size mismatch
    (masks / f"{train[1]}_segmentation.png").unlink()  # no mask
    fx.write_mask(masks / f"{train[2]}_segmentation.png", fx.blob((12, 12)))  # size mismatch
    data = plan_of(str(tmp_path), "--n", "4", "--size", "64")
    assert data["n_training_skipped"] == 3
    assert data["training_skipped"] == {"missing_mask": 1, "size_mismatch": 2}
    assert data["training_samples"] == 3
    loud = invoke("augment", str(tmp_path), "--n", "4", "--size", "64", "--dry-run", "--json")
    said = " ".join(loud.stderr.split())  # Rich wraps a long line at the console's width
    assert said.count("left out") == 1
    assert (
        f"warning: 3 training pair(s) left out (missing_mask 1, size_mismatch 2); "
        f"`lesionaug info {Path(tmp_path).resolve()}` lists them"
    ) in said
def test_real_count_fits_the_plan_on_the_subset_evaluate_uses(demo, plan30):
    from lesionaug.dataset.index import load_dataset
    from lesionaug.dataset.subsets import RealSubset, choose_real_subset

    subset = plan_of(demo, "--n", "30", "--seed", "5", "--real-count", "6")
    assert subset["training_samples"] == 6 and plan30["training_samples"] == 24
    index = load_dataset(demo)
    chosen = choose_real_subset(index.usable("train"), RealSubset(count=6))
    # The label sampler and shape model are fitted on those 6 pairs alone: the plan records their fingerprint.
    assert subset["train_fingerprint"] == index.subset_fingerprint(chosen) != plan30["train_fingerprint"]
    assert subset["plan_hash"] != plan30["plan_hash"]
    code, error = error_of(demo, "--n", "3", "--dry-run", "--real-count", "25")
    assert code == 3 and "training split has 24" in error["message"]
