"""`lesionaug export` and `lesionaug doctor`: make an engine, and see what can run it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lesionaug.cli._app import ConfigOpt, JsonOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.cli.option_types import choice
from lesionaug.engine.doctor import collect_diagnostics
from lesionaug.export.run import PRECISIONS, export_model


@app.command("export")
def export_command(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by `lesionaug train`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Engine folder to write.")],
    precision: Annotated[
        choice(PRECISIONS), typer.Option("--precision", case_sensitive=False, help="fp32 for CPU engines, fp16 for GPU.")
    ] = "fp32",
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check ONNX Runtime against PyTorch.")] = True,
    opset: Annotated[int, typer.Option(help="ONNX opset (18 or newer).")] = 18,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing engine folder.")] = False,
    allow_pickle: Annotated[
        bool,
        typer.Option("--allow-pickle", help="Accept .bin/.pt pickle weights in the model folder (runs their code)."),
    ] = False,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Export a trained model to an ONNX engine folder (text encoder, fused UNet+ControlNet, VAE decoder).

    Each graph is checked against PyTorch on a random input; a failed check leaves no engine behind.

    Example: lesionaug export model/ --out engine/ --precision fp32
    """

    def body(reporter):
        result = export_model(model_dir, out, precision=precision, verify=verify, reporter=reporter,
                              opset=opset, force=force, allow_pickle=allow_pickle)
        data = result.as_dict()

        def render(console) -> None:
            console.print(f"engine written: {result.engine_dir} ({result.precision}, "
                          f"sides a multiple of {result.size_multiple} px, {result.seconds:.1f} s)")
            for name, graph in result.graphs.items():
                check = graph.get("verification")
                diff = f"max diff {check['max_abs_diff']:.2e}" if check else "not verified"
                console.print(f"  {graph['file']:<18} {diff:<20} sha256 {graph['sha256'][:16]}")

        return data, render

    run_command("export", Out(json_, quiet, verbose), body)


@app.command("doctor")
def doctor_command(
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show versions, execution providers, GPUs, TensorRT and the engines in the cache folder.

    Example: lesionaug doctor --json
    """

    def body(reporter):
        data = collect_diagnostics()

        def render(console) -> None:
            versions = data["versions"]
            console.print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
            if data["onnxruntime_missing"]:
                console.print(data["onnxruntime_missing"])
            console.print("providers:")
            for row in data["providers"]:
                state = "usable" if row["usable"] else f"not usable ({row['reason']})"
                console.print(f"  {row['provider']:<9} {state}")
            console.print(f"auto picks: {data['auto_provider'] or 'nothing (no ONNX Runtime)'}")
            gpus = data["gpus"]
            console.print("gpus: " + (", ".join(f"{g['name']} ({g['memory']})" for g in gpus) if gpus else "none"))
            trt = data["tensorrt"]
            console.print(f"tensorrt: {trt['version'] or 'not installed'}")
            cache = data["cache"]
            console.print(f"cache: {cache['path']}" + ("" if cache["exists"] else " (not created yet)"))
            if not cache["engines"]:
                console.print("  no engines")
            for engine in cache["engines"]:
                state = "" if engine["exists"] else " (missing)"
                console.print(f"  engine {engine['path']}{state} {engine.get('precision', '')} "
                              f"{engine['size_bytes'] / 1e6:.1f} MB")

        return data, render

    run_command("doctor", Out(json_, quiet, verbose), body)
