"""FID and KID between real and generated images, with a feature extractor the user supplies.

torchmetrics' ``FrechetInceptionDistance`` and ``KernelInceptionDistance`` compute the distances; its
built-in Inception needs torch-fidelity (which imports torchvision, broken next to CPU torch) and
downloads weights, so lesionaug always passes its own ``nn.Module``, loaded from ``--fid-weights``:

- a TorchScript file (``torch.jit.save``), e.g. torch-fidelity's Inception traced on a machine that
  has it; or a ``torch.export`` archive (``.pt2``);
- an ONNX file, run by ONNX Runtime on the CPU.

The extractor takes uint8 RGB batches (N, 3, H, W) and returns (N, D) features, the convention of
torch-fidelity's ``FeatureExtractorInceptionV3`` (which resizes to 299 px itself). An extractor with a
fixed spatial input size (an ONNX graph or a .pt2 program exported at 299x299) gets its images
resized to that size first.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from lesionaug.engine.providers import import_onnxruntime
from lesionaug.errors import BackendError, ModelError

ENABLE_HINT = "pass --fid-weights FILE (a TorchScript, .pt2 or ONNX image feature extractor, e.g. Inception) to enable"
WRONG_FILE_FIX = (
    "save the extractor as a module, not a state dict: torch.jit.save(torch.jit.trace(model, example), FILE) "
    "or export it to ONNX"
)


def load_feature_extractor(path: Path):
    """An ``nn.Module`` with ``num_features`` from a TorchScript, torch.export or ONNX file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError("the feature extractor file does not exist", path=path, fix=ENABLE_HINT)
    fixed = None  # (H, W) the extractor requires, when it declares one
    if path.suffix.lower() == ".onnx":
        module, fixed = onnx_extractor(path)
    elif path.suffix.lower() == ".pt2":
        try:
            program = torch.export.load(str(path))
        except Exception as exc:  # noqa: BLE001 - any failure means the file is not a usable archive
            raise ModelError(
                f"not a torch.export archive ({type(exc).__name__}: {exc})", path=path, fix=WRONG_FILE_FIX
            ) from None
        module, fixed = program.module(), _program_input_size(program)
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
                module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - any failure means the file is not TorchScript
            if _is_state_dict(path):
                raise ModelError(
                    "the file holds weights only (a state dict), not a module lesionaug can run",
                    path=path,
                    fix=WRONG_FILE_FIX,
                ) from None
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            raise ModelError(
                f"not a TorchScript module ({type(exc).__name__}: {first_line})", path=path, fix=WRONG_FILE_FIX
            ) from None
    return _with_num_features(module, path, fixed)


def _program_input_size(program) -> tuple[int, int] | None:
    """(H, W) of an exported program's image input when they are static, else None."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            shape = tuple(node.meta["val"].shape)
            if len(shape) == 4 and all(type(d) is int for d in shape[2:]):
                return int(shape[2]), int(shape[3])
            return None
    return None


def _is_state_dict(path: Path) -> bool:
    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a torch.save file at all
        return False
    return isinstance(data, dict) and any(isinstance(v, torch.Tensor) for v in data.values())


def _with_num_features(module, path: Path, fixed: tuple[int, int] | None):
    import torch
    import torch.nn.functional as F

    class Extractor(torch.nn.Module):
        """Wraps any extractor so torchmetrics sees ``num_features`` and (N, D) float outputs.

        Extractors with a fixed input size get their uint8 batches resized to it first.
        """

        def __init__(self, inner, num_features: int):
            super().__init__()
            self.inner = inner
            self.num_features = num_features

        def train(self, mode: bool = True):
            # Inference only: the inner module stays in eval mode (exported programs cannot switch).
            self.training = mode
            return self

        def forward(self, images):
            if fixed is not None and tuple(images.shape[2:]) != fixed:
                resized = F.interpolate(images.float(), size=fixed, mode="bilinear", align_corners=False)
                images = resized.round().clamp(0, 255).to(torch.uint8)
            features = self.inner(images)
            if isinstance(features, (tuple, list)):
                features = features[0]
            return features.reshape(features.shape[0], -1).float()

    if hasattr(module, "training") and module.training:
        try:
            module.eval()  # a TorchScript module saved in training mode: no dropout, frozen batch norm
        except NotImplementedError:
            pass
    probe_size = fixed or (64, 64)
    try:
        with torch.no_grad():
            probe = Extractor(module, 0)(torch.zeros((2, 3, *probe_size), dtype=torch.uint8))
    except Exception as exc:  # noqa: BLE001 - the file does not follow the convention
        raise ModelError(
            f"the feature extractor failed on a uint8 (2, 3, {probe_size[0]}, {probe_size[1]}) batch "
            f"({type(exc).__name__}: {exc})",
            path=path,
            fix="use an extractor that takes uint8 RGB (N, 3, H, W) images and returns (N, D) features",
        ) from None
    return Extractor(module, int(probe.shape[1]))


def onnx_extractor(path: Path):
    """(an ``nn.Module`` running the ONNX graph with ONNX Runtime on the CPU, its fixed (H, W) or None)."""
    ort = import_onnxruntime()
    import torch

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"ONNX Runtime cannot load the feature extractor ({exc})", path=path, fix=WRONG_FILE_FIX
        ) from None
    graph_input = session.get_inputs()[0]
    dims = graph_input.shape
    fixed = (int(dims[2]), int(dims[3])) if len(dims) == 4 and all(isinstance(d, int) for d in dims[2:]) else None
    wants_uint8 = graph_input.type == "tensor(uint8)"

    class OnnxExtractor(torch.nn.Module):
        def forward(self, images):
            array = images.to(torch.uint8).numpy() if wants_uint8 else images.float().numpy()
            return torch.from_numpy(session.run(None, {graph_input.name: array})[0])

    return OnnxExtractor(), fixed


class FeatureDistances:
    """FID and KID between real and generated images, fed batch by batch (uint8 HxWx3 arrays)."""

    def __init__(self, extractor, expected: int):
        try:
            from torchmetrics.image.fid import FrechetInceptionDistance
            from torchmetrics.image.kid import KernelInceptionDistance
        except ImportError as exc:
            raise BackendError(f"torchmetrics is not installed ({exc})", fix="pip install torchmetrics") from None
        self.fid = FrechetInceptionDistance(feature=extractor, normalize=False)
        # KID averages an unbiased MMD over random subsets; half the images per subset makes them differ.
        subset = min(1000, max(2, expected // 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "KID keeps all features in memory": known, bounded
            self.kid = KernelInceptionDistance(feature=extractor, normalize=False, subset_size=subset, subsets=50)
        self.counts = {True: 0, False: 0}

    def update(self, images: Sequence[np.ndarray], *, real: bool) -> None:
        import torch

        if not len(images):
            return
        batch = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())
        self.fid.update(batch, real=real)
        self.kid.update(batch, real=real)
        self.counts[real] += len(images)

    def compute(self) -> dict:
        import torch

        n_real, n_generated = self.counts[True], self.counts[False]
        if min(n_real, n_generated) < 2:
            raise ModelError(f"FID needs at least 2 images per set, got {n_real} real and {n_generated} generated")
        subset = min(self.kid.subset_size, n_real, n_generated)
        self.kid.subset_size = subset
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # KID draws its subsets from the global generator: fix them, leave it untouched
            kid_mean, kid_std = self.kid.compute()
        return {
            "fid": float(self.fid.compute()),
            "kid_mean": float(kid_mean),
            "kid_std": float(kid_std),
            "kid_subset_size": subset,
            "n_real": n_real,
            "n_generated": n_generated,
        }
