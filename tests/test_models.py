"""Tests of remixup.models: shapes, parameter counts, mixing points, classifiers, channels_last + bf16."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from remixup.losses import build_loss
from remixup.models import MODELS, CosineLinear, build_model, get_mixing_points

# name -> (input shape without batch, expected mixing points); ResNet-50 is fed a small image to stay fast
# (adaptive pooling makes its output independent of the input size).
CASES = {
    "resnet32": ((3, 32, 32), ["input", "layer1", "layer2"]),
    "resnet18": ((3, 32, 32), ["input", "layer1", "layer2"]),
    "resnet50": ((3, 32, 32), ["input", "layer1", "layer2"]),
    "digits_cnn": ((1, 8, 8), ["input", "block1", "block2"]),
    "mlp": ((2,), ["input", "layer1", "layer2"]),
    "tabular_resnet": ((2,), ["input", "stem", "block1", "block2"]),
}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_covers_every_case() -> None:
    assert list(MODELS) == ["resnet32", "resnet18", "resnet50", "digits_cnn", "mlp", "tabular_resnet"]
    assert set(CASES) == set(MODELS)


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: build_model(name, 7) for name in MODELS}


@pytest.mark.parametrize("name", list(MODELS))
def test_output_shape_and_gradients(name: str, built: dict[str, nn.Module]) -> None:
    shape, _ = CASES[name]
    model = built[name].train()
    x = torch.randn(3, *shape)
    out = model(x)
    assert out.shape == (3, 7) and out.dtype == torch.float32
    out.sum().backward()
    assert model.fc.weight.grad is not None and torch.isfinite(model.fc.weight.grad).all()
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", list(MODELS))
def test_mixing_points_are_modules_with_tensor_outputs(name: str, built: dict[str, nn.Module]) -> None:
    shape, points = CASES[name]
    model = built[name].eval()
    assert model.mixing_points == points == get_mixing_points(model)
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    handles = [
        modules[p].register_forward_hook(lambda _m, _i, out, p=p: seen.__setitem__(p, out))
        for p in points
        if p != "input"
    ]
    try:
        with torch.no_grad():
            model(torch.randn(2, *shape))
    finally:
        for h in handles:
            h.remove()
    assert set(seen) == set(points) - {"input"}
    assert all(type(t) is torch.Tensor and t.shape[0] == 2 for t in seen.values())


def test_forward_hook_can_replace_a_mixing_point_output(built: dict[str, nn.Module]) -> None:
    model = built["resnet32"].eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        h = model.layer1.register_forward_hook(lambda _m, _i, out: out.flip(0))
        try:
            swapped = model(x)
        finally:
            h.remove()
    torch.testing.assert_close(swapped, ref.flip(0))


def test_parameter_counts() -> None:
    # ResNet-32: ≈ 0.46 M (464,154 with 10 classes); option-A shortcuts add no parameters.
    r32 = build_model("resnet32", 10)
    assert abs(_n_params(r32) - 0.46e6) < 0.01e6
    assert _n_params(r32) == 464_154
    assert not any("shortcut" in n for n, _ in r32.named_parameters())
    assert sum(isinstance(m, nn.Conv2d) for m in r32.modules()) == 31  # 31 conv + 1 fc = 32 layers
    assert _n_params(build_model("resnet18", 10)) == 11_173_962
    assert _n_params(build_model("resnet50", 1000)) == 25_557_032  # the standard ResNet-50
    assert _n_params(build_model("mlp", 3, hidden=(16, 8))) == (2 * 16 + 16) + (16 * 8 + 8) + (8 * 3 + 3)


def test_resnet32_layout() -> None:
    model = build_model("resnet32", 10).eval()
    feats = {}
    for name in ("layer1", "layer2", "layer3"):
        getattr(model, name).register_forward_hook(lambda _m, _i, out, name=name: feats.__setitem__(name, out.shape))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert feats == {
        "layer1": (1, 16, 32, 32),
        "layer2": (1, 32, 16, 16),
        "layer3": (1, 64, 8, 8),
    }
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [5, 5, 5]


@pytest.mark.parametrize("name", list(MODELS))
def test_cosine_classifier_for_ldam(name: str) -> None:
    shape, _ = CASES[name]
    torch.manual_seed(0)
    model = build_model(name, 5, classifier="norm").eval()
    assert isinstance(model.fc, CosineLinear)
    with torch.no_grad():
        z = model(torch.randn(4, *shape))
    assert z.shape == (4, 5) and bool((z.abs() <= 1 + 1e-5).all())
    loss = build_loss("ldam", class_counts=[100, 50, 20, 10, 5])
    assert torch.isfinite(loss(z, torch.tensor([0, 1, 2, 4])))


def test_cosine_linear_is_a_cosine() -> None:
    fc = CosineLinear(4, 3)
    x = torch.randn(5, 4)
    expected = torch.nn.functional.cosine_similarity(x[:, None, :], fc.weight[None, :, :], dim=2)
    torch.testing.assert_close(fc(x), expected)
    torch.testing.assert_close(fc(3 * x), fc(x))


@pytest.mark.parametrize("name", ["resnet32", "resnet18", "resnet50", "digits_cnn"])
def test_channels_last_and_bf16_autocast(name: str, built: dict[str, nn.Module]) -> None:
    shape, _ = CASES[name]
    model = built[name].eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model_cl(x.to(memory_format=torch.channels_last))
        finally:
            model.to(memory_format=torch.contiguous_format)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, atol=0.25, rtol=0.1)


def test_mlp_bf16_autocast_and_training_step() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", 2, hidden=16, depth=3)
    assert model.mixing_points == ["input", "layer1", "layer2", "layer3"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = build_loss("ce")(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


def test_a_users_sequential_works_without_special_api() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    assert get_mixing_points(model) == ["input"]
    x = torch.randn(4, 3, 2, 2)
    t = torch.tensor([[0.3, 0.7, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    loss = build_loss("focal", weight=[1.0, 2.0, 3.0])(model(x), t)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())

    class Named(nn.Sequential):
        mixing_points = ["input", "1"]

    assert get_mixing_points(Named(*model)) == ["input", "1"]

    class Wrong(nn.Sequential):
        def mixing_points(self) -> list[str]:
            return ["input", "body"]

    with pytest.raises(ValueError, match="`mixing_points` of `Wrong` names 'body', which is not a module"):
        get_mixing_points(Wrong(*model))


def test_factory_errors() -> None:
    with pytest.raises(ValueError, match="unknown model 'vgg'; valid models: resnet32, resnet18, resnet50, digits_cnn, mlp"):
        build_model("vgg", 10)
    with pytest.raises(ValueError, match="unknown parameter `width` for model 'resnet32'; valid parameters: in_channels"):
        build_model("resnet32", 10, width=2)
    with pytest.raises(ValueError, match="`classifier` of `ResNet32` must be one of 'linear', 'norm'; got 'cos'"):
        build_model("resnet32", 10, classifier="cos")
    with pytest.raises(ValueError, match="`num_classes` of `build_model` must be >= 1; got 0"):
        build_model("mlp", 0)
    with pytest.raises(ValueError, match="`depth` of `MLP` must be >= 1; got 0"):
        build_model("mlp", 3, depth=0)
    with pytest.raises(TypeError, match="`num_classes` of `build_model` must be an integer"):
        build_model("mlp", 2.5)


def test_in_channels_and_zero_init_residual() -> None:
    model = build_model("resnet18", 4, in_channels=1, zero_init_residual=True).eval()
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 4)
    assert all(not b.bn2.weight.detach().any() for b in model.layer1)
    assert build_model("resnet32", 4, in_channels=1, blocks=3)(torch.randn(2, 1, 32, 32)).shape == (2, 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_classifier_without_bias(name: str) -> None:
    shape, _ = CASES[name]
    torch.manual_seed(0)
    model = build_model(name, 6, classifier_bias=False).eval()
    assert isinstance(model.fc, nn.Linear) and model.fc.bias is None
    assert "fc.bias" not in model.state_dict() and "fc.bias" in build_model(name, 6).state_dict()
    assert _n_params(build_model(name, 6)) - _n_params(model) == 6
    with torch.no_grad():
        assert model(torch.randn(3, *shape)).shape == (3, 6)
        # no bias: a zero feature vector gives zero logits, whatever the weights learned
        assert not model.fc(torch.zeros(2, model.fc.in_features)).any()
    # the cosine classifier has no bias either way
    assert isinstance(build_model(name, 6, classifier="norm", classifier_bias=False).fc, CosineLinear)


def test_classifier_bias_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="`classifier_bias` of `ResNet32` must be True or False; got 'no'"):
        build_model("resnet32", 10, classifier_bias="no")


def test_tabular_resnet_follows_gorishniy_et_al() -> None:
    """Linear stem, blocks x + Dropout(Linear(Dropout(ReLU(Linear(BN(x)))))), then BN, ReLU and the classifier."""
    torch.manual_seed(0)
    model = build_model("tabular_resnet", 3, in_features=5, width=8, hidden_factor=1.5, blocks=3, hidden_dropout=0.2, residual_dropout=0.1)
    assert model.mixing_points == ["input", "stem", "block1", "block2", "block3"]
    block = model.block2
    assert (block.norm.num_features, block.linear1.out_features, block.linear2.out_features) == (8, 12, 8)
    assert (block.dropout1.p, block.dropout2.p) == (0.2, 0.1)
    model.eval()
    x = torch.randn(4, 8)
    with torch.no_grad():
        expected = x + block.linear2(torch.relu(block.linear1(block.norm(x))))  # dropout is off in eval
        torch.testing.assert_close(block(x), expected)
        inputs = torch.randn(4, 5)
        h = model.stem(inputs)
        for k in (1, 2, 3):
            h = getattr(model, f"block{k}")(h)
        torch.testing.assert_close(model(inputs), model.fc(torch.relu(model.head_norm(h))))
    with pytest.raises(ValueError, match="`blocks` of `TabularResNet` must be >= 1"):
        build_model("tabular_resnet", 3, blocks=0)
