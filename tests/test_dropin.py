"""RemixMixup: timm's Mixup options with Remix labels, any batch size, one-hot/soft labels, randomness in workers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset, default_collate

from remixup import MixTransform, MixupLabels, MixupMixer, RemixLabels, RemixMixup, soft_cross_entropy
from remixup.mixing import batch_generator

COUNTS = [60, 20, 6, 2]
C = len(COUNTS)


def images(b: int = 8, seed: int = 0, h: int = 8, w: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g), torch.randint(0, C, (b,), generator=g)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def timm_target(y: torch.Tensor, lam: torch.Tensor, smoothing: float, num_classes: int) -> torch.Tensor:
    """timm's ``mixup_target`` (data/mixup.py): smoothed one-hot of y and of y reversed, mixed by lam."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    y1 = torch.full((y.shape[0], num_classes), off).scatter_(1, y.view(-1, 1), on)
    y2 = torch.full((y.shape[0], num_classes), off).scatter_(1, y.flip(0).view(-1, 1), on)
    lam = lam.reshape(-1, 1)
    return y1 * lam + y2 * (1.0 - lam)


# ----------------------------------------------------------------------------------------------------------------
# the contract
# ----------------------------------------------------------------------------------------------------------------
OPTIONS: list[dict] = [
    {"mixup_alpha": 1.0},
    {"mixup_alpha": 0.0, "cutmix_alpha": 1.0},
    {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": "elem"},
    {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": "pair", "prob": 0.7},
    {"mixup_alpha": 0.0, "cutmix_minmax": (0.2, 0.8), "mode": "elem"},
]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("batch", [1, 2, 5, 8])
def test_contract_shapes_rows_inputs_and_seed(options: dict, batch: int) -> None:
    x, y = images(batch)
    x0, y0 = x.clone(), y.clone()
    a = RemixMixup(**options, class_counts=COUNTS, generator=gen(3))
    b = RemixMixup(**options, class_counts=COUNTS, generator=gen(3))
    xa, ta = a(x, y)
    xb, tb = b(x, y)
    assert xa.shape == x.shape and ta.shape == (batch, C) and ta.dtype == torch.float32
    torch.testing.assert_close(ta.sum(1), torch.ones(batch))
    assert torch.equal(x, x0) and torch.equal(y, y0)  # inputs untouched
    assert xa.data_ptr() != x.data_ptr()
    assert torch.equal(xa, xb) and torch.equal(ta, tb)  # same generator state, same batch
    assert a.last is not None and a.last.lam_x.shape == (batch,)


def test_batch_of_one_passes_through_with_its_label() -> None:
    x, y = images(1)
    mixer = RemixMixup(mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.0, class_counts=COUNTS, generator=gen())
    state = mixer.generator.get_state()
    xo, t = mixer(x, y)
    assert torch.equal(xo, x)
    assert torch.equal(t, F.one_hot(y, C).float())
    assert torch.equal(mixer.generator.get_state(), state)  # nothing drawn
    smoothed = RemixMixup(label_smoothing=0.1, num_classes=C)(x, y)[1]
    torch.testing.assert_close(smoothed, F.one_hot(y, C).float() * 0.9 + 0.1 / C)


def test_odd_batch_in_pair_mode_leaves_the_middle_sample_alone() -> None:
    x, y = images(5)
    xo, _, rec = RemixMixup(mixup_alpha=1.0, mode="pair", num_classes=C, generator=gen()).mix(x, y)
    assert torch.equal(xo[2], x[2]) and rec.lam_x[2] == 1
    assert torch.equal(rec.lam_x, rec.lam_x.flip(0))


# ----------------------------------------------------------------------------------------------------------------
# tau = 0 is plain Mixup; timm's formula
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_tau_zero_equals_plain_mixup_and_timms_target(options: dict, smoothing: float) -> None:
    x, y = images(8, seed=1)
    remix = RemixMixup(**options, label_smoothing=smoothing, class_counts=COUNTS, tau=0.0, generator=gen(5))
    plain = RemixMixup(**options, label_smoothing=smoothing, num_classes=C, generator=gen(5))
    xr, tr, rec = remix.mix(x, y)
    xp, tp, _ = plain.mix(x, y)
    assert torch.equal(xr, xp) and torch.equal(tr, tp)
    torch.testing.assert_close(tp, timm_target(y, rec.lam_x, smoothing, C), rtol=0, atol=1e-6)


def test_remix_changes_labels_toward_the_minority_where_the_rule_says() -> None:
    x, y = images(64, seed=2)
    remix = RemixMixup(mode="elem", class_counts=COUNTS, kappa=3.0, tau=0.5, label_smoothing=0.0, generator=gen(1))
    _, target, rec = remix.mix(x, y)
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    n_i, n_j = counts[rec.y], counts[rec.y_partner]
    to_partner = (n_i / n_j >= 3) & (rec.lam_x < 0.5)
    to_self = (n_j / n_i >= 3) & (1 - rec.lam_x < 0.5)
    assert to_partner.any() and to_self.any()
    assert torch.equal(rec.lam_y[to_partner], torch.zeros(int(to_partner.sum())))
    assert torch.equal(rec.lam_y[to_self], torch.ones(int(to_self.sum())))
    rest = ~(to_partner | to_self)
    assert torch.equal(rec.lam_y[rest], rec.lam_x[rest])
    torch.testing.assert_close(target, timm_target(y, rec.lam_y, 0.0, C), rtol=0, atol=1e-6)


def test_own_label_policy_object() -> None:
    class HalfLabels:
        def __call__(self, y: torch.Tensor, y_partner: torch.Tensor, lam_x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(lam_x, 0.5)

    x, y = images(4)
    _, target, rec = RemixMixup(labels=HalfLabels(), num_classes=C, label_smoothing=0.0, generator=gen()).mix(x, y)
    assert torch.equal(rec.lam_y, torch.full((4,), 0.5))
    torch.testing.assert_close(target, 0.5 * F.one_hot(y, C).float() + 0.5 * F.one_hot(y.flip(0), C).float())
    remix = RemixMixup(labels=RemixLabels(COUNTS), generator=gen())  # C from the policy
    assert remix.num_classes == C


# ----------------------------------------------------------------------------------------------------------------
# each of timm's options
# ----------------------------------------------------------------------------------------------------------------
def kept_share(x: torch.Tensor, xo: torch.Tensor) -> torch.Tensor:
    return (xo == x).all(dim=1).flatten(1).double().mean(1)


def test_mixup_alpha_batch_mode_is_one_lerp_with_the_reversed_batch() -> None:
    x, y = images(6)
    xo, _, rec = RemixMixup(mixup_alpha=0.4, num_classes=C, generator=gen()).mix(x, y)
    lam = rec.lam_x[0]
    assert torch.equal(rec.lam_x, torch.full((6,), float(lam)))
    torch.testing.assert_close(xo, lam * x + (1 - lam) * x.flip(0))
    assert torch.equal(rec.perm, torch.arange(5, -1, -1))


def test_cutmix_alpha_pastes_a_box_and_lam_is_the_kept_share() -> None:
    x, y = images(6, h=16, w=12)
    for seed in range(5):
        xo, _, rec = RemixMixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", num_classes=C, generator=gen(seed)).mix(x, y)
        partner = x.flip(0)
        assert bool(((xo == x) | (xo == partner)).all())  # every pixel from one of the two
        torch.testing.assert_close(kept_share(x, xo), rec.lam_x.double(), rtol=0, atol=1e-6)


def test_cutmix_minmax_box_sides_in_range() -> None:
    x, y = images(64, h=20, w=20)
    xo, _, rec = RemixMixup(mixup_alpha=0.0, cutmix_minmax=(0.3, 0.6), mode="elem", num_classes=C, generator=gen()).mix(x, y)
    pasted = (xo != x).any(dim=1)  # (B, H, W); x and x.flip(0) differ everywhere for random images
    rows, cols = pasted.any(2).sum(1), pasted.any(1).sum(1)
    assert int(rows.min()) >= 6 and int(rows.max()) < 12 and int(cols.min()) >= 6 and int(cols.max()) < 12
    torch.testing.assert_close(1 - rec.lam_x.double(), (rows * cols).double() / 400, rtol=0, atol=1e-6)


def test_prob_sets_the_share_of_mixed_samples() -> None:
    x, y = images(400, h=4, w=4)
    _, _, none = RemixMixup(prob=0.0, mode="elem", num_classes=C, generator=gen()).mix(x, y)
    assert torch.equal(none.lam_x, torch.ones(400))
    _, _, some = RemixMixup(prob=0.5, mode="elem", num_classes=C, generator=gen()).mix(x, y)
    share = float((some.lam_x < 1).double().mean())
    assert 0.4 < share < 0.6


@pytest.mark.parametrize("switch_prob, cutmix_share", [(0.0, 0.0), (1.0, 1.0)])
def test_switch_prob_chooses_cutmix_over_mixup(switch_prob: float, cutmix_share: float) -> None:
    x, y = images(32)
    xo, _, _ = RemixMixup(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=switch_prob, mode="elem", num_classes=C,
                          generator=gen()).mix(x, y)  # fmt: skip
    only_copies = ((xo == x) | (xo == x.flip(0))).flatten(1).all(1)  # CutMix copies pixels, Mixup blends them
    assert float(only_copies.double().mean()) == cutmix_share


def test_switch_prob_half_mixes_both_in_elem_mode() -> None:
    x, y = images(200, h=4, w=4)
    xo, _, _ = RemixMixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=C, generator=gen()).mix(x, y)
    share = float(((xo == x) | (xo == x.flip(0))).flatten(1).all(1).double().mean())
    assert 0.35 < share < 0.65


def test_modes_batch_pair_elem() -> None:
    x, y = images(8)
    lam = {m: RemixMixup(mode=m, num_classes=C, generator=gen()).mix(x, y)[2].lam_x for m in ("batch", "pair", "elem")}
    assert lam["batch"].unique().numel() == 1
    assert torch.equal(lam["pair"], lam["pair"].flip(0)) and lam["pair"][:4].unique().numel() == 4
    assert lam["elem"].unique().numel() == 8


def test_correct_lam_off_keeps_the_drawn_lam() -> None:
    x, y = images(64, h=8, w=8)
    on = RemixMixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", num_classes=C, generator=gen())
    off = RemixMixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", correct_lam=False, num_classes=C, generator=gen())
    xo_on, _, rec_on = on.mix(x, y)
    xo_off, _, rec_off = off.mix(x, y)
    assert torch.equal(xo_on, xo_off)  # same boxes
    torch.testing.assert_close(kept_share(x, xo_on), rec_on.lam_x.double(), rtol=0, atol=1e-6)
    assert not torch.allclose(kept_share(x, xo_off), rec_off.lam_x.double(), atol=1e-3)


def test_label_smoothing_and_num_classes() -> None:
    x, y = images(4)
    _, t, _ = RemixMixup(prob=0.0, label_smoothing=0.2, num_classes=10, generator=gen()).mix(x, y)
    assert t.shape == (4, 10)
    torch.testing.assert_close(t, F.one_hot(y, 10).float() * 0.8 + 0.02)


def test_mixup_enabled_false_passes_through_like_timm() -> None:
    x, y = images(4)
    mixer = RemixMixup(class_counts=COUNTS, label_smoothing=0.0, generator=gen())
    mixer.mixup_enabled = False
    xo, t = mixer(x, y)
    assert torch.equal(xo, x) and torch.equal(t, F.one_hot(y, C).float())


# ----------------------------------------------------------------------------------------------------------------
# labels: indices, one-hot, soft
# ----------------------------------------------------------------------------------------------------------------
def test_one_hot_labels_give_the_index_targets() -> None:
    x, y = images(8)
    from_idx = RemixMixup(class_counts=COUNTS, label_smoothing=0.1, generator=gen(2)).mix(x, y)
    from_float = RemixMixup(class_counts=COUNTS, label_smoothing=0.1, generator=gen(2)).mix(x, F.one_hot(y, C).float())
    from_int = RemixMixup(class_counts=COUNTS, label_smoothing=0.1, generator=gen(2)).mix(x, F.one_hot(y, C))
    for other in (from_float, from_int):
        assert torch.equal(other[0], from_idx[0])
        torch.testing.assert_close(other[1], from_idx[1], rtol=0, atol=1e-6)
        assert torch.equal(other[2].lam_y, from_idx[2].lam_y)


def test_soft_labels_mix_rows_and_remix_uses_their_argmax() -> None:
    x, y = images(16, seed=4)
    soft = 0.7 * F.one_hot(y, C).float() + 0.3 / C
    _, target, rec = RemixMixup(mode="elem", class_counts=COUNTS, label_smoothing=0.0, generator=gen(1)).mix(x, soft)
    assert torch.equal(rec.y, y) and torch.equal(rec.y_partner, y.flip(0))
    lam = rec.lam_y.reshape(-1, 1)
    torch.testing.assert_close(target, lam * soft + (1 - lam) * soft.flip(0))
    assert (rec.lam_y != rec.lam_x).any()  # the Remix rule fired on the argmax classes


def test_targets_work_with_timms_soft_target_cross_entropy() -> None:
    x, y = images(8)
    _, target = RemixMixup(mixup_alpha=0.8, cutmix_alpha=1.0, class_counts=COUNTS, generator=gen())(x, y)
    logits = torch.randn(8, C, generator=gen(9))
    timm_loss = torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()  # timm.loss.SoftTargetCrossEntropy
    torch.testing.assert_close(soft_cross_entropy(logits, target), timm_loss)
    torch.testing.assert_close(F.cross_entropy(logits, target), timm_loss)


# ----------------------------------------------------------------------------------------------------------------
# randomness: main process, workers, ranks, reruns
# ----------------------------------------------------------------------------------------------------------------
def test_main_process_uses_the_generator_itself() -> None:
    g = gen()
    assert batch_generator(object(), g) is g and batch_generator(object(), None) is None


def _records(mixer: object, *, workers: int, loader_seed: int, epochs: int = 1, batch: int = 6) -> list:
    x, y = images(48, h=4, w=4)

    def collate(samples: list) -> tuple:
        xb, yb = default_collate(samples)
        return mixer.mix(xb, yb)[2]  # type: ignore[attr-defined]

    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate,
                        generator=gen(loader_seed))  # fmt: skip
    return [rec for _ in range(epochs) for rec in loader]


def _key(rec: object) -> tuple:
    return tuple(rec.lam_x.tolist()) + tuple(rec.perm.tolist())  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["remix_mixup", "mix_transform"])
def test_workers_draw_distinct_batches_reproducibly(kind: str) -> None:
    def make() -> object:
        if kind == "remix_mixup":
            return RemixMixup(mixup_alpha=1.0, mode="elem", class_counts=COUNTS, generator=gen(0))
        return MixTransform(MixupMixer(1.0, generator=gen(0)), MixupLabels(), num_classes=C)

    first = _records(make(), workers=2, loader_seed=1, epochs=2)
    keys = [_key(r) for r in first]
    assert len(keys) == 16 and len(set(keys)) == 16  # distinct across batches, workers and epochs
    again = _records(make(), workers=2, loader_seed=1, epochs=2)
    assert [_key(r) for r in again] == keys  # same seeds, same sequence
    other = _records(make(), workers=2, loader_seed=2, epochs=1)
    assert [_key(r) for r in other] != keys[:8]


def test_workers_differ_between_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(rank: str) -> list:
        monkeypatch.setenv("RANK", rank)
        return [_key(r) for r in _records(RemixMixup(mode="elem", num_classes=C, generator=gen(0)), workers=2, loader_seed=1)]

    r0, r1 = run("0"), run("1")
    assert r0 == run("0") and not set(r0) & set(r1)


def test_main_process_draws_are_unchanged_by_the_worker_rule() -> None:
    x, y = images(6)
    g = gen(7)
    mixer = MixupMixer(1.0, generator=g)
    out = mixer(x, y)
    g2 = gen(7)
    perm = torch.randperm(6, generator=g2)
    from remixup.mixing import sample_beta

    lam = sample_beta(1.0, 1, generator=g2).expand(6)
    assert torch.equal(out.perm, perm) and torch.equal(out.lam_x, lam)


# ----------------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: RemixMixup(mixup_alpha=-1, num_classes=C), ValueError, r"`mixup_alpha` of `RemixMixup` must be >= 0; got -1"),
        (lambda: RemixMixup(mixup_alpha=0.0, num_classes=C), ValueError, r"needs `mixup_alpha` > 0, `cutmix_alpha` > 0 or `cutmix_minmax`"),
        (lambda: RemixMixup(cutmix_minmax=(0.5,), num_classes=C), ValueError, r"`cutmix_minmax` of `RemixMixup` must be a pair"),
        (lambda: RemixMixup(cutmix_minmax=(0.5, 0.4), num_classes=C), ValueError, r"`cutmix_minmax\[1\]` of `RemixMixup` must be in \(0.5, 1\]"),
        (lambda: RemixMixup(prob=1.5, num_classes=C), ValueError, r"`prob` of `RemixMixup` must be in \[0, 1\]; got 1.5"),
        (lambda: RemixMixup(switch_prob=-0.1, num_classes=C), ValueError, r"`switch_prob` of `RemixMixup` must be in \[0, 1\]"),
        (lambda: RemixMixup(mode="half", num_classes=C), ValueError, r"`mode` of `RemixMixup` must be one of 'batch', 'pair', 'elem'; got 'half'"),
        (lambda: RemixMixup(correct_lam=1, num_classes=C), TypeError, r"`correct_lam` of `RemixMixup` must be a bool"),
        (lambda: RemixMixup(label_smoothing=1.0, num_classes=C), ValueError, r"`label_smoothing` of `RemixMixup` must be in \[0, 1\)"),
        (lambda: RemixMixup(), ValueError, r"`num_classes` of `RemixMixup` is needed"),
        (lambda: RemixMixup(num_classes=3, class_counts=COUNTS), ValueError, r"`num_classes` of `RemixMixup` is 3 but the class counts have 4"),
        (lambda: RemixMixup(labels=MixupLabels(), class_counts=COUNTS), ValueError, r"`labels` of `RemixMixup` replaces `class_counts`"),
        (lambda: RemixMixup(labels=MixupLabels(), tau=0.0, num_classes=C), ValueError, r"replaces `tau`"),
        (lambda: RemixMixup(labels="remix", num_classes=C), TypeError, r"`labels` of `RemixMixup` must be a label policy"),
        (lambda: RemixMixup(kappa=2.0, num_classes=C), ValueError, r"`kappa` and `tau` of `RemixMixup` need `class_counts`"),
        (lambda: RemixMixup(class_counts=[5, 0]), ValueError, r"`class_counts` of `RemixMixup` must be positive"),
        (lambda: RemixMixup(class_counts=COUNTS, tau=2.0), ValueError, r"`tau` of `RemixLabels` must be in \[0, 1\]"),
        (lambda: RemixMixup(num_classes=C, generator=0), TypeError, r"`generator` of `RemixMixup` must be a CPU torch.Generator or None; got 0"),
    ],
)
def test_bad_options_raise_named_errors(make, error, match) -> None:  # noqa: ANN001
    with pytest.raises(error, match=match):
        make()


def test_bad_batches_raise_named_errors() -> None:
    mixer = RemixMixup(cutmix_alpha=1.0, class_counts=COUNTS)
    x, y = images(4)
    with pytest.raises(ValueError, match=r"`y` of `RemixMixup` must hold class indices in \[0, 3\]"):
        mixer(x, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match=r"`y` of `RemixMixup` must have shape \(4,\)"):
        mixer(x, y[:3])
    with pytest.raises(ValueError, match=r"soft labels `y` of `RemixMixup` must have shape \(4, 4\)"):
        mixer(x, torch.rand(4, 5))
    with pytest.raises(ValueError, match=r"`x` of `RemixMixup` must have shape \(B, C, H, W\) or \(B, H, W\) for CutMix"):
        mixer(torch.rand(4, 3), y)
    with pytest.raises(TypeError, match=r"Mixup needs a floating-point `x`"):
        mixer((x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match=r"`cutmix_minmax` of `RemixMixup` gives no box side for an image side of 4"):
        RemixMixup(mixup_alpha=0.0, cutmix_minmax=(0.3, 0.4), num_classes=C)(torch.rand(2, 3, 4, 4), y[:2])


def test_cutmix_only_works_on_uint8_images() -> None:
    x, y = images(4)
    xu = (x * 255).to(torch.uint8)
    xo, _ = RemixMixup(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=C, generator=gen())(xu, y)
    assert xo.dtype == torch.uint8 and bool(((xo == xu) | (xo == xu.flip(0))).all())


def test_main_process_resumes_from_the_generator_state() -> None:
    x, y = images(8)
    g = gen(11)
    mixer = RemixMixup(mode="elem", class_counts=COUNTS, generator=g)
    mixer(x, y)
    saved = g.get_state()  # what a checkpoint keeps
    expected = [mixer(x, y)[1] for _ in range(3)]
    resumed = RemixMixup(mode="elem", class_counts=COUNTS, generator=torch.Generator().set_state(saved))
    assert all(torch.equal(resumed(x, y)[1], t) for t in expected)
