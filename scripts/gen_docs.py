#!/usr/bin/env python3
"""Generate shell completions and the man page from the Typer app.

    python scripts/gen_docs.py           # rewrite completions/ and man/lesionaug.1
    python scripts/gen_docs.py --check   # exit 1 if the committed files are stale (used by the tests)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typer
from typer._completion_shared import get_completion_script

from lesionaug import __release_date__, __version__
from lesionaug.cli import app
from lesionaug.cli.renames import POSITIONAL_OUT, RENAMED_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
PROG = "lesionaug"
COMPLETE_VAR = "_LESIONAUG_COMPLETE"

ENVIRONMENT = [
    ("LESIONAUG_<COMMAND>_<OPTION>, LESIONAUG_<OPTION>", "The value of an option not given on the command line: "
     "the option's long name in upper case, dashes as underscores, e.g. LESIONAUG_AUGMENT_DENOISE_STEPS=30 for "
     "augment only, or LESIONAUG_SEED=1 for every command with --seed (the command's own variable wins). They "
     "win over the config file; the command line wins over them. Flags take 1/0, true/false; --labels takes "
     "paths separated by spaces. --allow-pickle, --force and --break-lock are never read from the environment."),
    ("LESIONAUG_CACHE", "Folder for cached compact models, exported engines, TensorRT caches and engine graph digests "
     "(default: the user cache folder, e.g. ~/.cache/lesionaug)."),
    ("LESIONAUG_THREADS", "Intra-op threads of the CPU provider (default: the cores this process may use)."),
    ("LESIONAUG_SHARD_COUNT", "The shard count for augment --shard auto where the scheduler gives only an index "
     "(docs/cluster.md)."),
    ("LESIONAUG_PROGRESS_INTERVAL", "Seconds between plain progress lines when stderr is not a terminal (default 30)."),
    ("NO_COLOR", "When set and not empty, no colour in any output."),
    ("HF_HUB_OFFLINE", "When 1, Hugging Face hub ids are never fetched; pass a local model folder instead."),
    ("CUDA_VISIBLE_DEVICES", "Restricts the GPUs the CUDA and TensorRT providers see."),
]
EXIT_STATUS = [
    ("0", "Success."),
    ("1", "Unexpected error (rerun with -v for the traceback)."),
    ("2", "Usage error: an unknown option, or a value that is wrong whatever the files hold "
          "(--n 0, --steps 0, --size 7, an unknown scheduler, a text option over 4096 characters)."),
    ("3", "Bad file or folder: dataset, configuration file or output folder, a value that does not fit "
          "one, or an OS refusal (read-only, disk full, no permission, a name over 255 bytes), with its path."),
    ("4", "Backend or model unavailable (execution provider, model or engine folder)."),
    ("5", "Partial: some items failed; what succeeded is written and listed in the manifest."),
    ("130", "Interrupted; rerun the same command to resume."),
]
FILES = [
    ("lesionaug.toml", "Option values read from the working directory when present and no --config is given: "
     "top-level keys apply to every command that has the option, a table such as [augment] or [train] to that "
     "command only (it wins over top-level keys). Keys are long option names without dashes "
     "(denoise-steps = 30). Order: command line, then environment, then this file, then the defaults."),
    ("DATASET-augmented/lesionaug-manifest.jsonl", "One JSON line per synthetic pair: files and sha256, prompt, labels, seeds, model and engine hashes."),
    ("DATASET-augmented/lesionaug-run.json", "The full configuration of an augment run, its plan hash, timings and provider."),
    ("MODEL_DIR/lesionaug.json", "How a model was trained: base, resolution, prompt template, vocabulary, split fingerprint."),
    ("ENGINE_DIR/lesionaug.json", "How an engine was exported: shapes, precision, opset, library versions, graph hashes."),
]


def _escape(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def _commands(group) -> list[tuple[str, object]]:
    ctx = typer.Context(group, info_name=PROG)
    return [(name, group.get_command(ctx, name)) for name in group.list_commands(ctx)]


def _is_option(param) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def _option_synopsis(param) -> str:
    if not _is_option(param):
        name = (param.metavar or param.name or "ARG").upper()
        return name if param.required else f"[{name}]"
    opts = ", ".join(list(param.opts) + list(param.secondary_opts))
    if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
        opts += " " + (param.metavar or (param.name or "value").upper())
    return opts


def _shows_default(param) -> bool:
    """A default worth printing: any value, 0 included; not None, an empty one or a flag's False."""
    default = param.default
    if param.is_flag or default is None or default is False:
        return False
    return not (isinstance(default, (str, tuple, list)) and len(default) == 0)


def render_man(group) -> str:
    date = __release_date__  # the release's, so regeneration is deterministic
    out = [
        f'.TH LESIONAUG 1 "{date}" "lesionaug {__version__}" "User Commands"',
        ".SH NAME",
        "lesionaug \\- augment skin\\-lesion segmentation datasets with mask\\-conditioned ControlNet generation",
        ".SH SYNOPSIS",
        ".B lesionaug",
        "[\\-\\-version] COMMAND [ARGS] [OPTIONS]",
        ".SH DESCRIPTION",
        _escape(
            "lesionaug reads an existing skin-lesion segmentation dataset (ISIC 2016/2017/2018, HAM10000, PH2 or a "
            "plain images/masks folder), samples new lesion masks from a shape model fitted on its training split, "
            "builds text prompts from the lesion labels, generates matching dermoscopy images with a ControlNet "
            "exported to ONNX and run by ONNX Runtime (TensorRT, CUDA or CPU), and writes an augmented copy in the "
            "input's own layout. It can also train and score segmenters to measure what the new data is worth."
        ),
        ".PP",
        _escape("Every command takes --json (one result envelope on stdout), -q/--quiet and -v/--verbose after its "
                "name. stdout carries data only; progress and logs go to stderr. Every command also takes "
                "--config FILE.toml (see FILES and ENVIRONMENT). Supported dataset layouts, as folder trees with "
                "the label files read: docs/datasets.md, or lesionaug info --layouts."),
        ".SH COMMANDS",
    ]
    for name, cmd in _commands(group):
        out.append(".SS " + _escape(f"lesionaug {name}"))
        out.append(_escape((cmd.help or "").strip()))
        for param in cmd.params:
            if param.name in {"help"} or getattr(param, "hidden", False):
                continue
            out.append(".TP")
            out.append(".B " + _escape(_option_synopsis(param)))
            help_text = getattr(param, "help", None) or ""
            if _is_option(param) and _shows_default(param):
                help_text = f"{help_text} (default: {param.default})".strip()
            out.append(_escape(help_text or "Argument."))
    out.append(".SH DEPRECATED SPELLINGS")
    out.append(_escape("Still accepted, each use printing one line on stderr; config-file keys likewise."))
    for command, table in RENAMED_OPTIONS.items():
        for old, new in table.items():
            out += [".TP", ".B " + _escape(f"lesionaug {command} {old}"), _escape(f"Use {new}.")]
    for command in POSITIONAL_OUT:
        out += [".TP", ".B " + _escape(f"lesionaug {command} OUT ..."), _escape("Use --out OUT (-o OUT).")]
    out.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS:
        out += [".TP", f".B {code}", _escape(text)]
    out.append(".SH ENVIRONMENT")
    for name, text in ENVIRONMENT:
        out += [".TP", f".B {name}", _escape(text)]
    out.append(".SH FILES")
    for name, text in FILES:
        out += [".TP", ".I " + _escape(name), _escape(text)]
    out.append(".SH EXAMPLES")
    for name, cmd in _commands(group):
        for line in (cmd.help or "").splitlines():
            if line.strip().startswith("Example:"):
                out += [".PP", ".nf", _escape(line.strip()[len("Example:"):].strip()), ".fi"]
    out += [".SH SEE ALSO", "arXiv 2310.02906 (ISBI 2024)."]
    return "\n".join(out) + "\n"


def generated_files() -> dict[Path, str]:
    group = typer.main.get_command(app)
    files = {ROOT / "man" / "lesionaug.1": render_man(group)}
    for shell in ("bash", "zsh", "fish"):
        script = get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell)
        files[ROOT / "completions" / f"lesionaug.{shell}"] = script.rstrip("\n") + "\n"
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed files are stale")
    args = parser.parse_args()
    stale = []
    for path, text in generated_files().items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if args.check and stale:
        print("stale: " + ", ".join(map(str, stale)) + " -- run python scripts/gen_docs.py", file=sys.stderr)
        return 1
    if not args.check:
        print("wrote " + (", ".join(map(str, stale)) if stale else "nothing (up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
