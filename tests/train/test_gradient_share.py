"""benchmarks/pretrain_gradient_share.py: the per-objective gradients decompose the total one exactly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from gasp_core.models import GaspModel, LossConfig, variant
from gasp_core.models.losses import pretrain_losses
from gasp_core.train.dataset import PretrainDataset, QueryCounts
from tests.train.conftest import TINY_MODEL, TINY_SCENE

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "pretrain_gradient_share.py"


@pytest.fixture(scope="module")
def gs():
    spec = importlib.util.spec_from_file_location("pretrain_gradient_share", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_objective_gradients_sum_to_the_total(gs, pretrain_inputs):
    data = PretrainDataset(
        pretrain_inputs["store"],
        pretrain_inputs["occupancy"],
        pretrain_inputs["dino"],
        TINY_SCENE,
        TINY_MODEL.voxelizer,
        QueryCounts(occupancy=128, ego=64, dino=32),
        variant("gasp"),
    )
    torch.manual_seed(0)
    model = GaspModel(TINY_SCENE, TINY_MODEL, variant("gasp"), data.dino_dim).train()
    cfg = LossConfig(ego_weight=0.3, dino_weight=0.7)
    batch = torch.utils.data.default_collate([data[(0, 1)], data[(1, 2)]])
    losses, g_enc, g_bev, total_norm = gs.objective_gradients(model, batch, cfg)
    assert set(losses) == set(g_enc) == set(g_bev) == {"occupancy", "ego", "dino"}
    out = model(batch["voxels"], batch["occupancy_q"], batch["ego_q"], batch["dino_q"])
    enc = list(model.encoder.parameters())
    ref = torch.cat([g.reshape(-1) for g in torch.autograd.grad(pretrain_losses(out, batch, cfg)["total"], enc)])
    torch.testing.assert_close(sum(g_enc.values()), ref, rtol=1e-4, atol=1e-6)
    assert total_norm >= float(ref.norm()) - 1e-6
    res = gs.measure(model, data, cfg, [[(0, 1), (1, 2)]], TINY_SCENE)
    row = res["batches"][0]
    assert sum(row["proj_share"].values()) == pytest.approx(1.0, abs=1e-4)
    assert len(row["block_norm"]["ego"]) == len(res["blocks"])


def test_bev_spread_of_a_point(gs):
    b = torch.zeros(1, 2, 40, 40)
    b[0, 0, 20, 20] = 1.0  # the cell just past the ego (the grid spans -20..20 m in 1 m cells)
    near, area = gs.bev_spread(b, TINY_SCENE, radius_m=2.0)
    assert near == pytest.approx(1.0)
    assert area == pytest.approx(1.0)
