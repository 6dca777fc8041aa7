"""pytorch-fid's FID Inception-v3 network and the InceptionFeatures extractor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hpcbench.metrics._inception import FIDInceptionV3  # noqa: E402
from hpcbench.metrics.fid import FeatureExtractor, InceptionFeatures  # noqa: E402

STEM = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
BRANCHES = {
    "A": ["branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2",
          "branch3x3dbl_3", "branch_pool"],
    "B": ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
    "C": ["branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1",
          "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool"],
    "D": ["branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3",
          "branch7x7x3_4"],
    "E": ["branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1",
          "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"],
}  # fmt: skip
MIXED = {
    "Mixed_5b": "A", "Mixed_5c": "A", "Mixed_5d": "A", "Mixed_6a": "B", "Mixed_6b": "C",
    "Mixed_6c": "C", "Mixed_6d": "C", "Mixed_6e": "C", "Mixed_7a": "D", "Mixed_7b": "E",
    "Mixed_7c": "E",
}  # fmt: skip
PREFIXES = STEM + [f"{m}.{b}" for m, kind in MIXED.items() for b in BRANCHES[kind]]
SUFFIXES = ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]
# torchvision inception_v3: 27,161,264 parameters, minus fc (2048 * 1000 + 1000) and
# AuxLogits (768*128 + 2*128 + 128*768*25 + 2*768 + 768*1000 + 1000 = 3,326,696).
PARAMETERS = 27_161_264 - 2_049_000 - 3_326_696


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _weights(tmp_path: Path, **replace: Any) -> Path:
    """A randomly initialised network's weights (seeded, local generator) + a fake fc."""
    network = FIDInceptionV3()
    generator = torch.Generator().manual_seed(0)
    state = network.state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.copy_(0.1 * torch.randn(value.shape, generator=generator))
        elif key.endswith("running_var"):
            value.copy_(0.5 + torch.rand(value.shape, generator=generator))
        elif key.endswith("conv.weight"):
            fan_in = value[0].numel()
            value.copy_(torch.randn(value.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.zeros(1008, 2048)
    state["fc.bias"] = torch.zeros(1008)
    state.update(replace)
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    return path


def _images(n: int = 3, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 64, 64)).cumsum(axis=2)


def test_network_layout_matches_the_torchvision_inception3_keys() -> None:
    network = FIDInceptionV3()
    assert len(PREFIXES) == 94
    keys = {k for k in network.state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == {f"{p}.{s}" for p in PREFIXES for s in SUFFIXES}
    assert sum(p.numel() for p in network.parameters()) == PARAMETERS == 21_785_568
    shapes = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert shapes["Mixed_6e.branch7x7dbl_2.conv.weight"] == (192, 192, 7, 1)
    assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert shapes["Mixed_7c.branch3x3dbl_1.conv.weight"] == (448, 2048, 1, 1)


def test_features_from_a_weights_file(tmp_path: Path) -> None:
    extractor = InceptionFeatures(_weights(tmp_path), batch_size=2)
    assert isinstance(extractor, FeatureExtractor)
    assert extractor.name == "inception-v3-pt_inception-2015-12-05"
    assert extractor.dimension == 2048
    images = _images()
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    features = extractor(images)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    assert features.shape == (3, 2048) and features.dtype == np.float64
    assert np.isfinite(features).all() and (features >= 0).all()
    assert features.std(axis=0).max() > 0  # images are told apart
    np.testing.assert_array_equal(extractor(images), features)
    # batching and per-image affine intensity changes do not matter
    whole = InceptionFeatures(_weights(tmp_path), batch_size=32)
    np.testing.assert_allclose(whole(3.0 * images + 7.0), features, rtol=1e-4, atol=1e-5)


def test_bad_weights_files_are_rejected(tmp_path: Path) -> None:
    bad = _weights(tmp_path, **{"Mixed_6c.branch7x7_2.conv.weight": torch.zeros(160, 160, 7, 1)})
    with pytest.raises(ValueError, match=r"Mixed_6c\.branch7x7_2\.conv\.weight") as info:
        InceptionFeatures(bad)
    assert str(bad) in str(info.value)
    extra = _weights(tmp_path, **{"AuxLogits.fc.weight": torch.zeros(1008, 768)})
    with pytest.raises(ValueError, match=r"unexpected keys.*AuxLogits\.fc\.weight"):
        InceptionFeatures(extra)
    state = torch.load(_weights(tmp_path), weights_only=True)
    del state["Mixed_5b.branch1x1.bn.running_var"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"missing keys.*Mixed_5b\.branch1x1\.bn\.running_var"):
        InceptionFeatures(tmp_path / "partial.pth")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        InceptionFeatures(tmp_path / "absent.pth")
