"""Pre-training loss composition against hand computations: each head's loss, its weight, pos_weight, missing heads."""

from __future__ import annotations

import itertools

import pytest
import torch

from gasp_core.models.config import LossConfig
from gasp_core.models.losses import pretrain_losses

# weights and pos_weights all distinct (and not 1), so that a swapped or ignored one changes the total
CFG = LossConfig(
    occupancy_weight=1.7,
    ego_weight=0.3,
    dino_weight=0.45,
    occupancy_pos_weight=2.5,
    ego_pos_weight=4.0,
    dino_loss="cosine",
)


def bce_by_hand(logits: torch.Tensor, labels: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Mean of -[pos_weight * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))], written out."""
    x, y = logits.double(), labels.double()
    p = 1.0 / (1.0 + torch.exp(-x))
    return (-(pos_weight * y * torch.log(p) + (1.0 - y) * torch.log(1.0 - p))).mean()


def cosine_by_hand(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    a, b = pred.double(), target.double()
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return (1.0 - cos).mean()


def make(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = {
        "bev": torch.zeros(2, 4, 3, 3),
        "occupancy_logits": torch.randn(2, 50, generator=g) * 2,
        "ego_logits": torch.randn(2, 20, generator=g) * 2,
        "dino": torch.randn(2, 10, 8, generator=g),
    }
    batch = {
        "occupancy_label": (torch.rand(2, 50, generator=g) < 0.3).float(),
        "ego_label": (torch.rand(2, 20, generator=g) < 0.4).float(),
        "dino_target": torch.randn(2, 10, 8, generator=g),
    }
    return out, batch


def by_hand(out, batch, cfg: LossConfig) -> dict[str, float]:
    res = {}
    if "occupancy_logits" in out:
        res["occupancy"] = float(
            bce_by_hand(out["occupancy_logits"], batch["occupancy_label"], cfg.occupancy_pos_weight)
        )
    if "ego_logits" in out:
        res["ego"] = float(bce_by_hand(out["ego_logits"], batch["ego_label"], cfg.ego_pos_weight))
    if "dino" in out:
        if cfg.dino_loss == "cosine":
            res["dino"] = float(cosine_by_hand(out["dino"], batch["dino_target"]))
        else:
            res["dino"] = float(((out["dino"].double() - batch["dino_target"].double()) ** 2).mean())
    weight = {"occupancy": cfg.occupancy_weight, "ego": cfg.ego_weight, "dino": cfg.dino_weight}
    res["total"] = sum(weight[k] * v for k, v in res.items())
    return res


@pytest.mark.parametrize("dino_loss", ["cosine", "l2"])
def test_each_head_and_the_weighted_total_match_by_hand(dino_loss):
    cfg = LossConfig(**{**CFG.__dict__, "dino_loss": dino_loss})
    out, batch = make()
    got = pretrain_losses(out, batch, cfg)
    expected = by_hand(out, batch, cfg)
    assert set(got) == set(expected) == {"occupancy", "ego", "dino", "total"}
    for k, v in expected.items():
        assert float(got[k]) == pytest.approx(v, rel=1e-5), k
    # the total is the weighted sum of the reported per-head losses
    assert float(got["total"]) == pytest.approx(
        cfg.occupancy_weight * float(got["occupancy"])
        + cfg.ego_weight * float(got["ego"])
        + cfg.dino_weight * float(got["dino"]),
        rel=1e-6,
    )


def test_pos_weight_scales_the_positive_terms_only():
    out, batch = make(1)
    base = LossConfig(**{**CFG.__dict__, "occupancy_pos_weight": 1.0, "ego_pos_weight": 1.0})
    plain, weighted = pretrain_losses(out, batch, base), pretrain_losses(out, batch, CFG)
    for head, key, pw in (
        ("occupancy", "occupancy_logits", CFG.occupancy_pos_weight),
        ("ego", "ego_logits", CFG.ego_pos_weight),
    ):
        label = batch[f"{head}_label"]
        x, y = out[key].double(), label.double()
        pos_term = (-y * torch.nn.functional.logsigmoid(x)).mean()  # the positive part of the mean BCE
        assert float(weighted[head]) - float(plain[head]) == pytest.approx(float((pw - 1.0) * pos_term), rel=1e-5), head
        assert float(pos_term) > 0
    # all-negative labels: pos_weight has nothing to weigh
    neg = {k: torch.zeros_like(v) if k.endswith("_label") else v for k, v in batch.items()}
    a, b = pretrain_losses(out, neg, base), pretrain_losses(out, neg, CFG)
    assert float(a["occupancy"]) == pytest.approx(float(b["occupancy"]), rel=1e-6)
    assert float(a["ego"]) == pytest.approx(float(b["ego"]), rel=1e-6)


@pytest.mark.parametrize(
    "heads", [h for r in range(4) for h in itertools.combinations(("occupancy_logits", "ego_logits", "dino"), r)]
)
def test_missing_heads_contribute_nothing(heads):
    full_out, batch = make(2)
    out = {"bev": full_out["bev"], **{k: full_out[k] for k in heads}}
    got = pretrain_losses(out, batch, CFG)
    expected = by_hand(out, batch, CFG)
    names = {"occupancy_logits": "occupancy", "ego_logits": "ego", "dino": "dino"}
    assert set(got) == {names[h] for h in heads} | {"total"}
    assert float(got["total"]) == pytest.approx(expected["total"], rel=1e-5, abs=1e-12)
    if not heads:
        assert float(got["total"]) == 0.0


@pytest.mark.parametrize("field", ["occupancy_weight", "ego_weight", "dino_weight"])
def test_each_weight_moves_only_its_own_term(field):
    out, batch = make(3)
    a = pretrain_losses(out, batch, CFG)
    b = pretrain_losses(out, batch, LossConfig(**{**CFG.__dict__, field: getattr(CFG, field) * 3.0}))
    head = field.removesuffix("_weight")
    for k in ("occupancy", "ego", "dino"):
        assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-6)
    assert float(b["total"]) - float(a["total"]) == pytest.approx(2.0 * getattr(CFG, field) * float(a[head]), rel=1e-5)
