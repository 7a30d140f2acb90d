"""``lesionaug verify`` and ``lesionaug merge``: check and join augmented folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lesionaug.cli._app import ConfigOpt, JsonOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.cli.renames import out_folder
from lesionaug.errors import VerificationFailed
from lesionaug.output.merge import merge_shards
from lesionaug.output.verify import verify_output

SHOWN_DIFFERENCES = 20


@app.command("verify")
def verify_command(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="A folder written by augment or merge.")],
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check every file of an augmented folder against its manifest: missing, changed (sha256) or extra.

    Exits 3 and lists the differences when anything differs.

    Example: lesionaug verify ./isic-augmented
    """

    def body(reporter):
        result = verify_output(out_dir, reporter)
        if not result["ok"]:
            diffs = result["differences"]
            for diff in diffs[:SHOWN_DIFFERENCES]:
                reporter.warn(f"{diff['kind']}: {diff['path']} ({diff['message']})")
            if len(diffs) > SHOWN_DIFFERENCES:
                reporter.warn(f"... and {len(diffs) - SHOWN_DIFFERENCES} more (use --json for the full list)")
            summary = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in result["counts"].items() if n)
            raise VerificationFailed(
                f"{len(diffs)} difference(s) from the manifest: {summary}",
                path=out_dir,
                fix="rerun the augment command to repair or finish it (or --force to rebuild)",
                data=result,
            )

        def render(console):
            console.print(
                f"ok: {result['n_pairs']} synthetic pairs and {result['n_files_checked']} files match "
                f"the manifest in {out_dir}"
            )

        return result, render

    run_command("verify", Out(json_, quiet, verbose), body)


def merge_folders(out: Path | None, folders: list[Path]) -> tuple[Path, list[Path]]:
    """``--out`` and the shards; without --out, the first folder is the output (the old spelling)."""
    if out is None and len(folders) >= 2:
        return out_folder("merge", None, folders[0]), list(folders[1:])
    return out_folder("merge", out, None), list(folders)


@app.command("merge")
def merge_command(
    shard_dirs: Annotated[list[Path], typer.Argument(metavar="SHARD_DIR...", help="Outputs of augment --shard i/N.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="New folder for the merged dataset.")] = None,
    break_lock: Annotated[
        bool,
        typer.Option("--break-lock", help="Clear a stale lock left on a filesystem without file locks or by "
                     "another host (refused while a live run holds it)."),
    ] = False,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Join the outputs of `augment --shard i/N` into one dataset with one manifest in job order.

    Refuses shards of different plans, missing or repeated shards, unfinished shards, paths that lead
    out of a shard, and files that differ from their shard's sha256 (exit 3, before anything is written).

    Example: lesionaug merge --out ./isic-augmented ./shard-0 ./shard-1 ./shard-2
    """

    def body(reporter):
        out_dir, shards = merge_folders(out, shard_dirs)
        result = merge_shards(out_dir, shards, reporter, break_lock=break_lock)

        def render(console):
            console.print(f"merged {result['n_shards']} shards, {result['n_pairs']} synthetic pairs into {result['out']}")

        return result, render

    run_command("merge", Out(json_, quiet, verbose), body)
