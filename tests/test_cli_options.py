"""One word, one meaning on the command line: --out/-o, sizes, step counts, choices, renamed
spellings, --config files, lesionaug.toml and LESIONAUG_* variables, and where help points."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lesionaug import __release_date__
from lesionaug.cli import app
from lesionaug.cli.config_file import command_entries, env_names, file_options
from lesionaug.cli.option_types import size_text, square_side
from lesionaug.cli.renames import RENAMED_OPTIONS, rewrite_renamed
from lesionaug.dataset.layouts import LAYOUTS
from lesionaug.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
WRITERS = ("demo-data", "masks", "augment", "merge", "datalist", "train", "evaluate", "quality", "export")
# command -> options with a fixed set of values, and one value each must offer
CHOICES = {
    "augment": {"--scheduler": "euler-a", "--provider": "tensorrt", "--image-format": "jpg", "--model-size": "tiny",
                "--link": "reflink", "--mask-source": "mixed"},
    "quality": {"--scheduler": "ddim", "--provider": "cuda", "--split": "val", "--seg-arch": "basicunet",
                "--seg-device": "cpu"},
    "demo-data": {"--layout": "ph2", "--style": "deep"},
    "masks": {"--mask-source": "real"},
    "train": {"--model-size": "base", "--mixed-precision": "bf16", "--optimizer": "adamw8bit",
              "--prediction-type": "epsilon", "--report-to": "tensorboard"},
    "evaluate": {"--seg-arch": "attentionunet", "--seg-device": "cuda", "--seg-augment": "flips"},
    "export": {"--precision": "fp16"},
    "datalist": {"--format": "nnunet"},
}
runner = CliRunner()


def commands() -> dict[str, typer.core.TyperCommand]:
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    return {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}


def visible_options(command) -> dict[str, object]:
    return {opt: p for p in command.params if not getattr(p, "hidden", False) for opt in getattr(p, "opts", [])}


def invoke(*args, env: dict | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def envelope(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- one word, one meaning


def test_every_command_that_writes_takes_out_and_o() -> None:
    cmds = commands()
    for name in WRITERS:
        assert {"--out", "-o"} <= set(visible_options(cmds[name])), name


def test_step_and_size_words_mean_one_thing() -> None:
    for name, cmd in commands().items():
        options = visible_options(cmd)
        # the old words are gone from help (they live on only as deprecated spellings)
        assert not {"--steps", "--image-size", "--seg-image-size", "--resolution"} & set(options), name
        for opt in ("--size", "--seg-size"):
            if opt in options:
                assert options[opt].metavar in ("N", "N|WxH"), (name, opt)
    cmds = commands()
    assert "--denoise-steps" in visible_options(cmds["augment"]) and "--denoise-steps" in visible_options(cmds["quality"])
    assert "--train-steps" in visible_options(cmds["train"]) and "--train-steps" in visible_options(cmds["augment"])
    assert "--seg-steps" in visible_options(cmds["evaluate"])


def test_size_values() -> None:
    assert size_text("512") == "512" and size_text("640X480") == "640x480" and size_text(" 64 x 64 ") == "64"
    assert square_side("128") == 128 and square_side("96x96") == 96 and square_side(64) == 64
    for bad in ("abc", "12x", "-3", "1.5"):
        with pytest.raises(typer.BadParameter):
            size_text(bad)
    with pytest.raises(typer.BadParameter, match="square"):
        square_side("640x480")


def test_fixed_value_options_are_choices_that_completion_offers() -> None:
    cmds = commands()
    for name, options in CHOICES.items():
        cmd = cmds[name]
        ctx = typer.Context(cmd, info_name=name)
        for opt, value in options.items():
            param = visible_options(cmd)[opt]
            offered = [item.value for item in param.shell_complete(ctx, "")]
            assert value in offered and len(offered) >= 2, (name, opt, offered)
            assert "|".join(offered) in param.display_type(ctx), (name, opt)


def test_a_value_outside_a_choice_is_a_usage_error_listing_the_values(tmp_path: Path) -> None:
    result = invoke("export", tmp_path, "--out", tmp_path / "e", "--precision", "fp8")
    assert result.exit_code == 2
    assert "fp32" in result.stderr and "fp16" in result.stderr
    upper = invoke("demo-data", "--out", tmp_path / "d", "--n", "2", "--size", "32", "--layout", "PH2", "-q")
    assert upper.exit_code == 0, upper.stderr  # choices ignore case


# ----------------------------------------------------------------------------- renamed spellings


def test_every_renamed_option_maps_to_an_option_of_its_command() -> None:
    cmds = commands()
    for name, table in RENAMED_OPTIONS.items():
        options = visible_options(cmds[name])
        for old, new in table.items():
            assert new in options and old not in options, (name, old, new)


def test_rewrite_renamed_keeps_values_and_the_end_of_options() -> None:
    seen = []
    words = rewrite_renamed("augment", ["d", "--steps", "5", "--steps=6", "--", "--steps"], lambda *a: seen.append(a))
    assert words == ["d", "--denoise-steps", "5", "--denoise-steps=6", "--", "--steps"]
    assert seen == [("augment", "--steps", "--denoise-steps")] * 2
    assert rewrite_renamed("info", ["--steps"]) == ["--steps"]


def test_old_spellings_still_work_with_one_deprecation_line(demo_isic2018: Path) -> None:
    old = invoke("augment", demo_isic2018, "--n", "3", "--size", "32", "--steps", "7", "--dry-run", "--json", "-q")
    assert old.exit_code == 0, old.stderr
    assert old.stderr.strip().splitlines() == ["lesionaug augment: --steps is deprecated; use --denoise-steps"]
    new = invoke("augment", demo_isic2018, "--n", "3", "--size", "32", "--denoise-steps", "7", "--dry-run", "--json", "-q")
    assert new.exit_code == 0 and "deprecated" not in new.stderr
    assert envelope(old)["data"]["plan_hash"] == envelope(new)["data"]["plan_hash"]


def test_demo_data_output_as_an_argument_is_deprecated(tmp_path: Path) -> None:
    old = invoke("demo-data", tmp_path / "old", "--n", "2", "--size", "32", "-q")
    assert old.exit_code == 0 and (tmp_path / "old").is_dir()
    assert "the output folder as an argument is deprecated; use --out OUT" in old.stderr
    new = invoke("demo-data", "-o", tmp_path / "new", "--n", "2", "--size", "32", "-q")
    assert new.exit_code == 0 and new.stderr == ""
    assert sorted(p.name for p in (tmp_path / "new").rglob("*")) == sorted(p.name for p in (tmp_path / "old").rglob("*"))
    both = invoke("demo-data", tmp_path / "a", "--out", tmp_path / "b", "--json")
    assert both.exit_code == 2 and "given twice" in envelope(both)["errors"][0]["message"]
    neither = invoke("demo-data", "--n", "2", "--json")
    assert neither.exit_code == 2 and "--out" in envelope(neither)["errors"][0]["message"]


def test_merge_takes_out_and_its_old_first_argument(tmp_path: Path) -> None:
    from lesionaug.cli.dataset_ops import merge_folders

    a, b, c = (tmp_path / x for x in "abc")
    assert merge_folders(c, [a, b]) == (c, [a, b])
    assert merge_folders(None, [c, a, b]) == (c, [a, b])
    assert merge_folders(c, [a]) == (c, [a])
    with pytest.raises(Exception, match="--out is required"):
        merge_folders(None, [a])


# ----------------------------------------------------------------------------- --config, lesionaug.toml, LESIONAUG_*


def test_every_command_takes_config() -> None:
    for name, cmd in commands().items():
        assert "--config" in visible_options(cmd), name


def test_command_line_beats_environment_beats_file(demo_isic2018: Path, tmp_path: Path) -> None:
    config = tmp_path / "ci.toml"
    config.write_text('n = 2\nsize = "32"\n[augment]\nn = 3\n[train]\nn-is-not-a-train-option = 1\n')

    def n_of(*args, env=None):
        result = invoke("augment", demo_isic2018, "--config", config, "--dry-run", "--json", "-q", *args, env=env)
        assert result.exit_code == 0, result.stderr
        return envelope(result)["data"]["n"]

    # [train] holds a key train lacks, but augment skips other commands' tables entirely
    assert n_of() == 3  # the command's own table wins over the top level
    assert n_of(env={"LESIONAUG_N": "4"}) == 4
    assert n_of(env={"LESIONAUG_N": "4", "LESIONAUG_AUGMENT_N": "5"}) == 5
    assert n_of("--n", "6", env={"LESIONAUG_AUGMENT_N": "5"}) == 6


def test_lesionaug_toml_in_the_working_directory(demo_isic2018: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lesionaug.toml").write_text('[augment]\nn = 4\nsize = "32"\nsteps = 9\n')
    result = invoke("augment", demo_isic2018, "--dry-run", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert envelope(result)["data"]["n"] == 4
    assert "lesionaug augment: steps in " in result.stderr
    assert "lesionaug.toml is deprecated; use denoise-steps" in result.stderr
    other = tmp_path / "other.toml"
    other.write_text('[augment]\nn = 5\nsize = "32"\n')
    given = invoke("augment", demo_isic2018, "--config", other, "--dry-run", "--json", "-q")
    assert envelope(given)["data"]["n"] == 5  # --config replaces ./lesionaug.toml


def test_a_required_option_may_come_from_the_file(demo_isic2018: Path, tmp_path: Path) -> None:
    config = tmp_path / "lesionaug.toml"
    config.write_text(f'[datalist]\nformat = "csv"\nout = "{tmp_path / "list"}"\n')
    result = invoke("datalist", demo_isic2018, "--config", config, "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "list" / "datalist.csv").is_file()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stepz = 3\n", "unknown key 'stepz'"),
        ("[augment]\nformat = 'csv'\n", "unknown key 'format' in [augment]"),  # another command's option
        ("[augmnet]\nn = 3\n", "table [augmnet] names no command"),
        ("[augment]\nn = 'three'\n", "bad value for 'n'"),
        ("n = ", "not valid TOML"),
    ],
)
def test_bad_config_files_exit_3_naming_the_file(demo_isic2018: Path, tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = invoke("augment", demo_isic2018, "--config", config, "--dry-run", "--json")
    assert result.exit_code == 3
    error = envelope(result)["errors"][0]
    assert message in error["message"] and error["path"] == str(config)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_top_level_keys_serve_every_command_that_has_them() -> None:
    commands_keys = {"augment": {"n", "seed"}, "train": {"seed", "train_steps"}}
    data = {"seed": 1, "train-steps": 5, "augment": {"n": 3}, "train": {"train_steps": 7}}
    assert command_entries(data, "augment", {"n", "seed"}, path=Path("x"), commands=commands_keys) == {"n": 3, "seed": 1}
    assert command_entries(data, "train", {"seed", "train_steps"}, path=Path("x"), commands=commands_keys) == {
        "seed": 1, "train_steps": 7}
    with pytest.raises(ConfigError, match="'bogus'"):
        command_entries({"bogus": 1}, "augment", {"n"}, path=Path("x"), commands=commands_keys)
    renamed = {"steps": "denoise_steps"}
    old = command_entries({"steps": 3}, "augment", {"denoise_steps"}, path=Path("x"), renamed=renamed)
    assert old == {"denoise_steps": 3}
    with pytest.raises(ConfigError, match="set twice"):
        command_entries({"steps": 3, "denoise-steps": 4}, "augment", {"denoise_steps"}, path=Path("x"), renamed=renamed)


def test_environment_names_never_collide() -> None:
    """A variable names one option meaning: the command-specific name of one option is never the
    general name of another, and none is a variable lesionaug reads for something else."""
    reserved = {"LESIONAUG_CACHE", "LESIONAUG_THREADS", "LESIONAUG_SHARD_COUNT", "LESIONAUG_PROGRESS_INTERVAL"}
    general: dict[str, set[str]] = {}
    specific: set[str] = set()
    for name, cmd in commands().items():
        for key, param in file_options(cmd).items():
            if key in ("allow_pickle", "force", "break_lock"):
                assert param.envvar is None, (name, key)  # typed or written in a file, never inherited
                continue
            own, shared = env_names(name, key)
            assert param.envvar == [own, shared]
            specific.add(own)
            general.setdefault(shared, set()).add(key)
    assert not specific & set(general)
    assert not (specific | set(general)) & reserved


# ----------------------------------------------------------------------------- where help points


def test_info_lists_the_layouts_and_docs_describe_each(tmp_path: Path) -> None:
    result = invoke("info", "--layouts", "--json")
    assert result.exit_code == 0
    data = envelope(result)["data"]
    assert [row["name"] for row in data["layouts"]] == list(LAYOUTS)
    docs = (ROOT / data["docs"]).read_text()
    for name in LAYOUTS:
        assert f"`{name}`" in docs, name
    human = invoke("info", "--layouts")
    assert "docs/datasets.md" in human.stdout and all(name in human.stdout for name in LAYOUTS)
    assert invoke("info").exit_code == 2


def test_help_and_man_page_point_at_files_users_have() -> None:
    man = (ROOT / "man" / "lesionaug.1").read_text()
    assert "DATASETS.md" not in man and "docs/datasets.md" in man
    for name in commands():
        assert "DATASETS.md" not in invoke(name, "--help").stdout, name
    assert f'"{__release_date__}"' in man.splitlines()[0]
    assert re.search(r"(?m)^\.B \\-\\-seed SEED\n.*\(default: 0\)$", man)
    for variable in ("LESIONAUG_CACHE", "LESIONAUG_THREADS", "LESIONAUG_SHARD_COUNT", "LESIONAUG_<OPTION>"):
        assert variable in man, variable
    assert "lesionaug.toml" in man and "DEPRECATED SPELLINGS" in man
