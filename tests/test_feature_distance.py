"""FID/KID with a user-supplied extractor: TorchScript and ONNX files, agreement with a numpy FID."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lesionaug.errors import ModelError
from lesionaug.evaluate.feature_distance import FeatureDistances, load_feature_extractor


def _images(seed: int, n: int, shift: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(rng.normal(120 + shift, 40, (32, 32, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


def _tiny_extractor():
    """A tiny conv feature extractor: uint8 NCHW -> 6 features."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 6, 3)

        def forward(self, x):
            return torch.tanh(self.conv(x.float() / 255.0)).mean(dim=(2, 3))

    return Tiny().eval()


@pytest.fixture(scope="module")
def exported_file(tmp_path_factory) -> Path:
    """The tiny extractor as a torch.export archive (.pt2): dynamic batch, fixed 32x32 input."""
    import torch

    example = torch.zeros((2, 3, 32, 32), dtype=torch.uint8)
    program = torch.export.export(_tiny_extractor(), (example,), dynamic_shapes=({0: torch.export.Dim("n")},))
    path = tmp_path_factory.mktemp("fid") / "features.pt2"
    torch.export.save(program, str(path))
    return path


def _numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def test_fid_matches_a_numpy_frechet_distance(exported_file):
    import torch

    extractor = load_feature_extractor(exported_file)
    assert extractor.num_features == 6
    real, generated = _images(1, 40), _images(2, 40, shift=30)
    distances = FeatureDistances(extractor, 40)
    distances.update(real[:25], real=True)
    distances.update(real[25:], real=True)  # fed in two batches: the result must not care
    distances.update(generated, real=False)
    result = distances.compute()

    def features(images):
        with torch.no_grad():
            return extractor(torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())).double().numpy()

    assert result["fid"] == pytest.approx(_numpy_fid(features(real), features(generated)), rel=1e-3, abs=1e-5)
    assert result["fid"] > 0 and result["kid_mean"] > 0
    assert result["n_real"] == result["n_generated"] == 40
    assert distances.compute()["kid_mean"] == result["kid_mean"]  # KID's subsets are fixed


def test_same_images_give_fid_near_zero(exported_file):
    extractor = load_feature_extractor(exported_file)
    images = _images(3, 20)
    distances = FeatureDistances(extractor, 20)
    distances.update(images, real=True)
    distances.update(images, real=False)
    assert abs(distances.compute()["fid"]) < 1e-3


def test_onnx_extractor_with_a_fixed_input_size(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    # uint8 (N, 3, 16, 16) -> float -> global average pool -> (N, 3) features.
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
            helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["features"]),
        ],
        "tiny_features",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 3])],
    )
    path = tmp_path / "features.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10  # what every ONNX Runtime of the last years reads
    onnx.save(model, path)
    extractor = load_feature_extractor(path)
    assert extractor.num_features == 3
    distances = FeatureDistances(extractor, 10)
    distances.update(_images(4, 10), real=True)  # 32 px images, resized to the graph's 16 px
    distances.update(_images(5, 10, shift=40), real=False)
    assert distances.compute()["fid"] > 100  # mean colour moved by about 40 per channel


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_files_are_accepted(tmp_path):
    import torch

    path = tmp_path / "features.pt"
    torch.jit.save(torch.jit.script(_tiny_extractor()), str(path))
    extractor = load_feature_extractor(path)
    assert extractor.num_features == 6
    with torch.no_grad():
        assert extractor(torch.zeros((3, 3, 20, 20), dtype=torch.uint8)).shape == (3, 6)


def test_a_state_dict_is_refused_with_the_fix(tmp_path):
    import torch

    path = tmp_path / "inception.pth"
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3)}, path)
    with pytest.raises(ModelError, match="state dict"):
        load_feature_extractor(path)
    with pytest.raises(ModelError, match="does not exist"):
        load_feature_extractor(tmp_path / "missing.pt")
