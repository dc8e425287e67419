"""Manifold mixing on any nn.Module through forward hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from remixup import ManifoldMixup, MixupLabels, RemixLabels


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


class Recorder:
    """Counts calls of each module and keeps its last output, through hooks the test removes itself."""

    def __init__(self, model: nn.Module):
        self.calls: dict[str, int] = {}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in model.named_modules() if n]

    def _hook(self, name):
        def hook(_m, _i, _o):
            self.calls[name] = self.calls.get(name, 0) + 1

        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def test_mixes_at_exactly_one_point_and_matches_manual_mixing():
    model = make_model()
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    mm = ManifoldMixup(model, ["1", "3"], labels=MixupLabels(), num_classes=3, generator=torch.Generator().manual_seed(0))
    for _ in range(6):
        logits, target = mm(x, y)
        rec, point = mm.last, mm.last_point
        assert point in ("1", "3")
        k = int(point)
        lam = rec.lam_x.view(-1, 1)
        h = model[: k + 1](x)
        expected = model[k + 1 :](lam * h + (1 - lam) * h[rec.perm])
        torch.testing.assert_close(logits, expected)
        torch.testing.assert_close(target.sum(1), torch.ones(10))


def test_input_point_mixes_the_input():
    model = make_model()
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    mm = ManifoldMixup(model, ["input"], labels=MixupLabels(), num_classes=3, generator=torch.Generator().manual_seed(1))
    logits, _ = mm(x, y)
    lam = mm.last.lam_x.view(-1, 1)
    torch.testing.assert_close(logits, model(lam * x + (1 - lam) * x[mm.last.perm]))


def test_no_hook_is_left_behind_also_when_forward_raises():
    model = make_model()
    mm = ManifoldMixup(model, ["2"], labels=MixupLabels(), num_classes=3)
    mm(torch.randn(4, 6), torch.tensor([0, 1, 2, 0]))
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError):
        mm(torch.randn(4, 5), torch.tensor([0, 1, 2, 0]))  # wrong width: the first Linear raises
    assert all(not m._forward_hooks for m in model.modules())


def test_every_module_runs_once_and_the_model_is_unchanged():
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rec = Recorder(model)
    mm = ManifoldMixup(model, ["input", "1", "3"], labels=RemixLabels([100, 10, 1]), num_classes=3)
    mm(torch.randn(8, 6), torch.randint(0, 3, (8,)))
    rec.close()
    assert set(rec.calls.values()) == {1}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_remix_labels_apply_to_manifold_mixing():
    model = make_model()
    y = torch.tensor([0] * 8 + [2] * 8)
    mm = ManifoldMixup(model, ["1"], labels=RemixLabels([1000, 100, 10]), num_classes=3, generator=torch.Generator().manual_seed(0))
    seen_forced = False
    for _ in range(10):
        _, target = mm(torch.randn(16, 6), y)
        rec = mm.last
        forced = rec.lam_y != rec.lam_x
        seen_forced |= bool(forced.any())
        assert ((rec.lam_y[forced] == 0) | (rec.lam_y[forced] == 1)).all()
        assert (target[forced & (rec.y != rec.y_partner), 2] == 1).all()  # the minority class takes the label
    assert seen_forced


def test_gradients_flow_to_the_input_and_parameters():
    model = make_model()
    x = torch.randn(8, 6, requires_grad=True)
    mm = ManifoldMixup(model, ["3"], labels=MixupLabels(), num_classes=3)
    logits, target = mm(x, torch.randint(0, 3, (8,)))
    (-(target * logits.log_softmax(1)).sum(1).mean()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


def test_same_generator_same_result():
    model = make_model()
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    outs = []
    for _ in range(2):
        mm = ManifoldMixup(model, ["input", "1", "3"], labels=MixupLabels(), num_classes=3, generator=torch.Generator().manual_seed(5))
        outs.append([mm(x, y)[0] for _ in range(4)])
    assert all(torch.equal(a, b) for a, b in zip(*outs, strict=False))


def test_bad_points_name_the_valid_ones():
    model = make_model()
    with pytest.raises(ValueError, match=r"mixing point 'layer9' is not a module of the model; valid points: 'input', 0, 1"):
        ManifoldMixup(model, ["layer9"], labels=MixupLabels(), num_classes=3)
    with pytest.raises(ValueError, match=r"`points` of `ManifoldMixup` must be a non-empty list"):
        ManifoldMixup(model, [], labels=MixupLabels(), num_classes=3)
    with pytest.raises(ValueError, match=r"`points` of `ManifoldMixup` must be a non-empty list"):
        ManifoldMixup(model, "1", labels=MixupLabels(), num_classes=3)


def test_inner_names_resolve_through_a_wrapper():
    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, x):
            return self.module(x)

    wrapped = Wrapper(make_model())
    mm = ManifoldMixup(wrapped, ["1"], labels=MixupLabels(), num_classes=3)
    mm(torch.randn(4, 6), torch.tensor([0, 1, 2, 0]))
    assert mm.last_point == "1"
