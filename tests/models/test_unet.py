"""G-UNet, A-UNet and the ResNet UNet: shapes, parameter counts, weights, overfitting."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_fcn import blob_batch, fit
from torch import nn

from hpcbench.models import (
    AttentionUNet,
    ResNetEncoder,
    ResNetUNet,
    UNet,
    build_model,
    count_parameters,
    output_stride,
)
from hpcbench.study import ResNetUNetConfig, UNetConfig


@pytest.fixture(autouse=True)
def _torch_state() -> Iterator[None]:
    """Seed torch's global RNG for one test and restore it; one thread (steady timings)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- hand parameter counts


def _double_conv(cin: int, cout: int) -> int:
    # two bias-free 3x3 convolutions, each with a batch norm (weight + bias)
    return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout


def _unet_count(
    width: int, depth: int, cin: int, classes: int, upsampling: str, attention: bool
) -> int:
    total = 0
    channels = cin
    for i in range(depth + 1):  # encoder levels and the bottleneck
        total += _double_conv(channels, width * 2**i)
        channels = width * 2**i
    for i in reversed(range(depth)):
        c, half = width * 2 ** (i + 1), width * 2**i
        total += (4 * c + 1) * half if upsampling == "transpose" else (c + 1) * half
        if attention:
            f_int = max(1, half // 2)
            total += 2 * ((half + 1) * f_int + 2 * f_int)  # W_g and W_x: 1x1 conv + BN
            total += (9 * f_int + 1) + 2  # psi: 3x3 conv to 1 channel + BN
        total += _double_conv(2 * half, half)
    return total + (width + 1) * classes


def _basic(cin: int, c: int) -> int:
    return 9 * cin * c + 2 * c + 9 * c * c + 2 * c


def _bottleneck(cin: int, c: int) -> int:
    return cin * c + 2 * c + 9 * c * c + 2 * c + c * 4 * c + 2 * 4 * c


def _resnet_count(blocks: tuple[int, ...], bottleneck: bool, cin: int = 3, w: int = 64) -> int:
    total = 49 * cin * w + 2 * w
    inplanes = w
    for i, n in enumerate(blocks):
        planes = w * 2**i
        out = planes * (4 if bottleneck else 1)
        block = _bottleneck if bottleneck else _basic
        total += block(inplanes, planes)
        if inplanes != out or i > 0:  # 1x1 conv + BN shortcut
            total += inplanes * out + 2 * out
        total += (n - 1) * block(out, planes)
        inplanes = out
    return total


# ------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("architecture", ["unet", "attention_unet"])
@pytest.mark.parametrize(
    ("width", "depth", "in_channels", "upsampling"),
    [(4, 1, 1, "transpose"), (2, 3, 3, "bilinear"), (3, 4, 1, "bilinear"), (8, 2, 3, "transpose")],
)
def test_unet_output_shape(
    architecture: str,
    width: int,
    depth: int,
    in_channels: int,
    upsampling: str,
) -> None:
    config = UNetConfig.model_validate(
        {"architecture": architecture, "width": width, "depth": depth, "upsampling": upsampling}
    )
    model = build_model(config, in_channels=in_channels, num_classes=4)
    assert isinstance(model, AttentionUNet) == (architecture == "attention_unet")
    stride = output_stride(config)
    assert stride == 2**depth
    x = torch.randn(2, in_channels, 3 * stride, 2 * stride)
    assert model(x).shape == (2, 4, 3 * stride, 2 * stride)


@pytest.mark.parametrize(
    ("layers", "width", "depth", "in_channels"),
    [
        (18, 8, 1, 1),
        (18, 8, 2, 3),
        (34, 4, 5, 1),
        (50, 4, 3, 3),
        (101, 2, 4, 1),
        (152, 2, 5, 1),
        (18, 16, 5, 3),
    ],
)
def test_resnet_unet_output_shape(layers: int, width: int, depth: int, in_channels: int) -> None:
    config = ResNetUNetConfig.model_validate(
        {"architecture": "resnet_unet", "layers": layers, "width": width, "depth": depth}
    )
    model = build_model(config, in_channels=in_channels, num_classes=3)
    stride = output_stride(config)
    assert stride == 2**depth
    x = torch.randn(2, in_channels, 2 * stride, 3 * stride)
    assert model(x).shape == (2, 3, 2 * stride, 3 * stride)
    assert isinstance(model, ResNetUNet)
    features = model.encoder(x)
    assert [f.shape[1] for f in features] == model.encoder.channels
    assert [f.shape[2] for f in features] == [2 * stride // 2**s for s in range(1, depth + 1)]


def test_resnet_unet_builds_only_the_stages_it_uses() -> None:
    encoder = ResNetEncoder(1, layers=18, width=4, depth=3)
    names = {k.split(".")[0] for k in encoder.state_dict()}
    assert names == {"conv1", "bn1", "layer1", "layer2"}
    assert not hasattr(encoder, "layer3")
    assert not hasattr(ResNetEncoder(1, layers=18, width=4, depth=1), "maxpool")


def test_decoder_widths_scale_with_the_stem_width() -> None:
    widths = [m[0].out_channels for m in ResNetUNet(1, 2, width=64, depth=5).decoder]
    assert widths == [256, 128, 64, 32, 16]
    widths = [m[0].out_channels for m in ResNetUNet(1, 2, width=16, depth=3).decoder]
    assert widths == [16, 8, 4]
    widths = [m[0].out_channels for m in ResNetUNet(1, 2, width=2, depth=2).decoder]
    assert widths == [4, 4]  # floor of 4 channels


# --------------------------------------------------------------------- parameter counts


def test_paper_g_unet_feature_widths() -> None:
    model = build_model(UNetConfig(architecture="unet"), num_classes=3)
    assert isinstance(model, UNet)
    encoder = [
        [m.out_channels for m in block.modules() if isinstance(m, nn.Conv2d)]
        for block in [*model.encoder, model.bottleneck]
    ]
    assert encoder == [[64, 64], [128, 128], [256, 256], [512, 512], [1024, 1024]]
    ups = [up.up for up in model.decoder]
    assert all(isinstance(u, nn.ConvTranspose2d) for u in ups)
    assert [(u.in_channels, u.out_channels) for u in ups] == [
        (1024, 512),
        (512, 256),
        (256, 128),
        (128, 64),
    ]
    assert [up.conv[0].in_channels for up in model.decoder] == [1024, 512, 256, 128]
    assert [up.conv[3].out_channels for up in model.decoder] == [512, 256, 128, 64]
    assert (model.head.in_channels, model.head.out_channels, model.head.kernel_size) == (
        64,
        3,
        (1, 1),
    )
    assert count_parameters(model) == _unet_count(64, 4, 1, 3, "transpose", False)


@pytest.mark.parametrize("architecture", ["unet", "attention_unet"])
@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
@pytest.mark.parametrize(("width", "depth", "cin"), [(2, 1, 1), (3, 2, 3), (8, 3, 1)])
def test_unet_parameter_counts_by_hand(
    architecture: str, upsampling: str, width: int, depth: int, cin: int
) -> None:
    config = UNetConfig.model_validate(
        {"architecture": architecture, "width": width, "depth": depth, "upsampling": upsampling}
    )
    model = build_model(config, in_channels=cin, num_classes=2)
    expected = _unet_count(width, depth, cin, 2, upsampling, architecture == "attention_unet")
    assert count_parameters(model) == expected


def test_smallest_unet_count_written_out() -> None:
    # width 2, depth 1, 1 input channel, 2 classes, transposed convolution:
    # encoder 62 + bottleneck 232 + up (4*4*2+2) 34 + double conv 116 + head 6
    assert count_parameters(UNet(1, 2, width=2, depth=1)) == 62 + 232 + 34 + 116 + 6 == 450


def test_resnet_encoders_match_torchvision_counts() -> None:
    # torchvision resnet18: 11_689_512 incl. fc 512*1000+1000; resnet50: 25_557_032 incl.
    # fc 2048*1000+1000.
    r18 = ResNetEncoder(3, layers=18, width=64, depth=5)
    r50 = ResNetEncoder(3, layers=50, width=64, depth=5)
    assert count_parameters(r18) == _resnet_count((2, 2, 2, 2), False) == 11_689_512 - 513_000
    assert count_parameters(r50) == _resnet_count((3, 4, 6, 3), True) == 25_557_032 - 2_049_000
    assert count_parameters(r18) == 11_176_512
    assert count_parameters(r50) == 23_508_032


def test_resnet_encoder_uses_torchvision_names() -> None:
    keys = set(ResNetEncoder(3, layers=50, width=4, depth=5).state_dict())
    for key in [
        "conv1.weight",
        "bn1.weight",
        "bn1.running_mean",
        "bn1.num_batches_tracked",
        "layer1.0.conv1.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_var",
        "layer2.0.conv2.weight",
        "layer3.5.bn3.bias",
        "layer4.2.conv3.weight",
    ]:
        assert key in keys
    assert not any(k.startswith("fc.") for k in keys)
    r18 = set(ResNetEncoder(3, layers=18, width=4, depth=5).state_dict())
    assert "layer1.0.downsample.0.weight" not in r18
    assert "layer2.0.downsample.0.weight" in r18


def test_resnet_init() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ResNetUNet(1, 2, layers=18, width=64, depth=5)
    assert torch.all(model.encoder.bn1.weight == 1)
    assert torch.all(model.encoder.bn1.bias == 0)
    # kaiming_normal_(mode="fan_out"): std = sqrt(2 / (out_channels * k * k))
    w = model.encoder.layer4[0].conv2.weight.detach()
    expected = (2 / (512 * 9)) ** 0.5
    assert abs(float(w.std()) / expected - 1) < 0.02


# ------------------------------------------------------------------------ attention maps


def test_attention_maps_are_kept() -> None:
    model = AttentionUNet(1, 3, width=4, depth=3)
    assert model(torch.randn(2, 1, 16, 24)).shape == (2, 3, 16, 24)
    maps = model.attention_maps
    assert [tuple(a.shape) for a in maps] == [(2, 1, 4, 6), (2, 1, 8, 12), (2, 1, 16, 24)]
    assert all(bool(((a > 0) & (a < 1)).all()) for a in maps)
    assert not any(a.requires_grad for a in maps)
    plain = UNet(1, 3, width=4, depth=3)
    assert plain(torch.randn(1, 1, 16, 16)).shape == (1, 3, 16, 16)
    assert plain.attention_maps == []


# ------------------------------------------------------------------------------ weights


def _torchvision_file(tmp_path: Path, width: int = 8, name: str = "r18.pt") -> Path:
    """A full ResNet-18 (3-channel conv1, layer1-4, fc) saved as a torchvision state dict."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        full = ResNetEncoder(3, layers=18, width=width, depth=5)
        for p in full.parameters():  # make BN weights/biases non-trivial too
            p.data.normal_()
        state = dict(full.state_dict())
        for key, buffer in state.items():
            if key.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
            elif key.endswith("running_mean"):
                buffer.normal_()
        state["fc.weight"] = torch.randn(10, 8 * width)
        state["fc.bias"] = torch.randn(10)
    path = tmp_path / name
    torch.save(state, path)
    return path


@pytest.mark.parametrize("in_channels", [1, 2, 3])
def test_loads_torchvision_layout_weights(tmp_path: Path, in_channels: int) -> None:
    path = _torchvision_file(tmp_path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = ResNetUNetConfig(
        architecture="resnet_unet", layers=18, width=8, depth=3, weights=str(path)
    )
    model = build_model(config, in_channels=in_channels, num_classes=2)
    assert isinstance(model, ResNetUNet)
    loaded = model.encoder.state_dict()
    assert set(loaded) == {
        k for k in saved if k.split(".")[0] in {"conv1", "bn1", "layer1", "layer2"}
    }
    for key, value in loaded.items():
        if key != "conv1.weight":
            torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    conv1 = saved["conv1.weight"]
    if in_channels == 1:
        expected = conv1.sum(dim=1, keepdim=True)
    elif in_channels == 3:
        expected = conv1
    else:
        expected = conv1.sum(dim=1, keepdim=True).repeat(1, 2, 1, 1) / 2
    torch.testing.assert_close(loaded["conv1.weight"], expected, rtol=0, atol=0)
    # A uniform image gives the same stem response as the 3-channel original.
    x = torch.ones(1, in_channels, 16, 16)
    out = nn.functional.conv2d(x, loaded["conv1.weight"], stride=2, padding=3)
    ref = nn.functional.conv2d(torch.ones(1, 3, 16, 16), conv1, stride=2, padding=3)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert model(torch.randn(1, in_channels, 16, 16)).shape == (1, 2, 16, 16)


def test_wrong_shape_weights_name_the_path(tmp_path: Path) -> None:
    path = _torchvision_file(tmp_path, width=16, name="wide.pt")
    config = ResNetUNetConfig(
        architecture="resnet_unet", layers=18, width=8, depth=3, weights=str(path)
    )
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*shape mismatches"):
        build_model(config, num_classes=2)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    state = torch.load(_torchvision_file(tmp_path), weights_only=True)
    del state["layer1.1.bn2.weight"]
    state["layer2.0.conv9.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=re.escape(str(path))) as info:
        ResNetUNet(1, 2, layers=18, width=8, depth=3, weights=path)
    message = str(info.value)
    assert "missing keys layer1.1.bn2.weight" in message
    assert "unexpected keys layer2.0.conv9.weight" in message


def test_a_resnet50_file_does_not_load_into_a_resnet18(tmp_path: Path) -> None:
    path = tmp_path / "r50.pt"
    torch.save(ResNetEncoder(3, layers=50, width=4, depth=5).state_dict(), path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        ResNetUNet(1, 2, layers=18, width=4, depth=3, weights=path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        ResNetUNet(1, 2, layers=18, width=4, depth=2, weights=path)


def test_missing_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.pt"
    config = ResNetUNetConfig(architecture="resnet_unet", width=4, depth=2, weights=str(path))
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        build_model(config, num_classes=2)


# ------------------------------------------------------------------------- determinism


def test_same_seed_same_output() -> None:
    x = torch.linspace(-1, 1, 2 * 32 * 32).reshape(2, 1, 32, 32)
    outputs = []
    for _ in range(2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(11)
            model = AttentionUNet(1, 3, width=4, depth=2)
            images, masks = blob_batch(seed=1)
            fit(model, images, masks, lr=1e-2, steps=3, target=2.0)
        model.eval()
        with torch.no_grad():
            outputs.append(model(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


# ----------------------------------------------------------------------------- overfit


@pytest.mark.parametrize(
    ("name", "lr"),
    [
        ("unet", 1e-2),
        ("unet_bilinear", 3e-3),
        ("attention_unet", 1e-2),
        ("resnet18_unet", 1e-2),
    ],
)
def test_overfits_a_tiny_batch(name: str, lr: float) -> None:
    images, masks = blob_batch(seed=4)
    model: nn.Module
    if name == "unet":
        model = UNet(1, 3, width=8, depth=2)
    elif name == "unet_bilinear":
        model = UNet(1, 3, width=8, depth=3, upsampling="bilinear")
    elif name == "attention_unet":
        model = AttentionUNet(1, 3, width=8, depth=2)
    else:
        model = ResNetUNet(1, 3, layers=18, width=16, depth=3)
    f1, steps = fit(model, images, masks, lr=lr, steps=300)
    assert f1 > 0.95, f"{name}: foreground F1 {f1:.3f} after {steps} steps"
