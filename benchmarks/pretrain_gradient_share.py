"""How much each pre-training objective pulls on the encoder: per-objective gradient norms, shares and cosines.

    python benchmarks/pretrain_gradient_share.py [--variant gasp] [--batches 8] [--dino data/targets/dino/teacher]
        [--model models/pretrain/gasp/seed_0 ...] [--loss ego_weight=0.25 ...] [--json out.json]

Reads the ``scene``, ``splits`` and ``pretrain`` sections of params.yaml as ``stages/pretrain.py`` does, builds the
variant's model (seeded as the pre-training run seeds it) and a ``PretrainDataset`` on the pre-training pool
(``splits.train`` + ``splits.pool``), and
draws the batches training steps ``0 .. batches-1`` would see. For every batch and every objective k
(occupancy / ego / dino) it takes the gradient of the *weighted* loss ``lambda_k * L_k`` with respect to

- the encoder parameters (``g_k``, one flat vector), and
- the BEV feature map (``b_k``, shape (B, C, H, W)),

and reports, averaged over the batches:

- ``|g_k|`` and ``|g_k| / sum_j |g_j|`` (norm share);
- ``<g_k, g> / |g|^2`` with ``g = sum_j g_j`` (projection share: the part of the total step along the total
  direction that objective k supplies; the shares sum to 1, a negative one means k pulls against the rest);
- ``cos(g_k, g_j)`` between objectives, and ``cos(g_k, g)``;
- the same for the gradient summed over all the batches (what the optimizer's momentum follows);
- ``|b_k|``, its share, and where it lands on the BEV grid: the fraction of its energy within 10 m of the
  ego and the area (m^2) that carries it (participation ratio of the per-cell energy);
- per encoder block (backbone stages, FPN): the norm share of each objective;
- the total gradient norm over all parameters against ``train.grad_clip``.

``--model`` (repeatable) measures a trained model folder (``models/pretrain/<variant>/seed_<s>``) too; its own
config.json gives the variant and model settings. Queries come from the stored targets; the model runs in
train mode (batch-norm statistics of the batch, as in training). CPU by default with one thread.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from gasp_core.cli import read_params
from gasp_core.config import from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.models import GaspModel, load_pretrained, variant
from gasp_core.models.config import LossConfig
from gasp_core.models.losses import pretrain_losses
from gasp_core.tasks.config import SplitsConfig
from gasp_core.train.dataset import PretrainDataset
from gasp_core.train.pretrain import batch_items, pretrain_config_from_dict

OBJECTIVES = ("occupancy", "ego", "dino")
WEIGHT_KEY = {"occupancy": "occupancy_weight", "ego": "ego_weight", "dino": "dino_weight"}


def _block(name: str) -> str:
    """A readable encoder block of a parameter name (``backbone.layer2.0.conv1.weight`` -> ``backbone.layer2``)."""
    parts = name.split(".")
    if parts[0] == "backbone":
        return (
            ".".join(parts[:2])
            if not parts[1].startswith("conv1") and not parts[1].startswith("bn1")
            else "backbone.stem"
        )
    return parts[0]


def objective_gradients(
    model: GaspModel, batch: dict[str, torch.Tensor], loss_cfg: LossConfig
) -> tuple[dict[str, float], dict[str, torch.Tensor], dict[str, torch.Tensor], float]:
    """One batch: (unweighted losses, flat encoder gradient per objective, BEV-map gradient per objective,
    total gradient norm over all parameters). Each gradient is that of the objective's weighted loss."""
    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    out = model(batch["voxels"], batch["occupancy_q"], batch.get("ego_q"), batch.get("dino_q"))
    losses = pretrain_losses(out, batch, loss_cfg)
    present = [k for k in OBJECTIVES if k in losses]
    g_enc, g_bev = {}, {}
    for k in present:
        term = getattr(loss_cfg, WEIGHT_KEY[k]) * losses[k]
        grads = torch.autograd.grad(term, [*enc, out["bev"]], retain_graph=True, allow_unused=True)
        g_enc[k] = torch.cat(
            [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads[:-1], enc)]
        )
        g_bev[k] = grads[-1].detach()
    model.zero_grad(set_to_none=True)
    losses["total"].backward()
    total_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters() if p.grad is not None))
    model.zero_grad(set_to_none=True)
    return {k: float(losses[k].detach()) for k in present}, g_enc, g_bev, total_norm


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm() + 1e-30))


def bev_spread(b: torch.Tensor, scene: SceneConfig, radius_m: float = 10.0) -> tuple[float, float]:
    """(energy fraction within ``radius_m`` of the ego, area in m^2 carrying the energy) of a BEV gradient."""
    e = b.pow(2).sum(dim=(0, 1))  # (H, W)
    h, w = e.shape
    x0, x1, y0, y1 = scene.extent_m[:4]
    cell = ((x1 - x0) / w) * ((y1 - y0) / h)
    ys = y0 + (torch.arange(h) + 0.5) * (y1 - y0) / h
    xs = x0 + (torch.arange(w) + 0.5) * (x1 - x0) / w
    r = torch.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    tot = float(e.sum()) + 1e-30
    near = float(e[r <= radius_m].sum()) / tot
    area = tot**2 / (float(e.pow(2).sum()) + 1e-30) * cell
    return near, area


def measure(
    model: GaspModel,
    data: PretrainDataset,
    loss_cfg: LossConfig,
    items: list[list[tuple[int, int]]],
    scene: SceneConfig,
) -> dict:
    model.train()
    blocks = [_block(n) for n, p in model.encoder.named_parameters() if p.requires_grad]
    sizes = [p.numel() for p in model.encoder.parameters() if p.requires_grad]
    block_names = list(dict.fromkeys(blocks))
    block_index = torch.repeat_interleave(torch.tensor([block_names.index(b) for b in blocks]), torch.tensor(sizes))
    per_batch: list[dict] = []
    summed: dict[str, torch.Tensor] = {}
    for batch_items_ in items:
        batch = torch.utils.data.default_collate([data[it] for it in batch_items_])
        losses, g_enc, g_bev, total_norm = objective_gradients(model, batch, loss_cfg)
        ks = list(g_enc)
        g = sum(g_enc.values())
        row = {
            "loss": losses,
            "total_grad_norm": total_norm,
            "enc_norm": {},
            "proj_share": {},
            "cos_total": {},
            "bev_norm": {},
            "bev_near10": {},
            "bev_area_m2": {},
            "cos": {},
            "block_norm": {},
        }
        if "ego_label" in batch:
            row["ego_pos_frac"] = float(batch["ego_label"].mean())
        for k in ks:
            row["enc_norm"][k] = float(g_enc[k].norm())
            row["proj_share"][k] = float(torch.dot(g_enc[k], g) / (g.norm() ** 2 + 1e-30))
            row["cos_total"][k] = _cos(g_enc[k], g)
            row["bev_norm"][k] = float(g_bev[k].norm())
            row["bev_near10"][k], row["bev_area_m2"][k] = bev_spread(g_bev[k], scene)
            sq = torch.zeros(len(block_names)).index_add_(0, block_index, g_enc[k].pow(2))
            row["block_norm"][k] = sq.sqrt().tolist()
            summed[k] = summed.get(k, 0) + g_enc[k]
        for i, a in enumerate(ks):
            for b in ks[i + 1 :]:
                row["cos"][f"{a}|{b}"] = _cos(g_enc[a], g_enc[b])
        per_batch.append(row)
    ks = list(summed)
    gs = sum(summed.values())
    mean_grad = {
        "enc_norm": {k: float(summed[k].norm()) / len(items) for k in ks},
        "proj_share": {k: float(torch.dot(summed[k], gs) / (gs.norm() ** 2 + 1e-30)) for k in ks},
        "cos": {f"{a}|{b}": _cos(summed[a], summed[b]) for i, a in enumerate(ks) for b in ks[i + 1 :]},
    }
    return {"batches": per_batch, "mean_gradient": mean_grad, "blocks": block_names}


def _avg(rows: list[dict], key: str, sub: str) -> float:
    vals = [r[key][sub] for r in rows if sub in r.get(key, {})]
    return float(np.mean(vals)) if vals else float("nan")


def print_report(title: str, res: dict, loss_cfg: LossConfig, grad_clip: float) -> None:
    rows = res["batches"]
    ks = [k for k in OBJECTIVES if k in rows[0]["enc_norm"]]
    print(f"\n== {title}: {len(rows)} batches ==")
    norm_sum = [sum(r["enc_norm"].values()) for r in rows]
    bev_sum = [sum(r["bev_norm"].values()) for r in rows]
    print(
        f"{'objective':<10} {'lambda':>6} {'loss':>7} {'|g_enc|':>9} {'norm shr':>8} {'proj shr':>8} {'cos(g_k,g)':>10} "
        f"{'|g_bev|':>9} {'bev shr':>7} {'bev<10m':>7} {'bev area m2':>11}"
    )
    for k in ks:
        shr = np.mean([r["enc_norm"][k] / s for r, s in zip(rows, norm_sum)])
        bshr = np.mean([r["bev_norm"][k] / s for r, s in zip(rows, bev_sum)])
        print(
            f"{k:<10} {getattr(loss_cfg, WEIGHT_KEY[k]):>6.2f} {_avg(rows, 'loss', k):>7.4f} {_avg(rows, 'enc_norm', k):>9.3e} "
            f"{shr:>8.3f} {_avg(rows, 'proj_share', k):>8.3f} {_avg(rows, 'cos_total', k):>10.3f} {_avg(rows, 'bev_norm', k):>9.3e} "
            f"{bshr:>7.3f} {_avg(rows, 'bev_near10', k):>7.3f} {_avg(rows, 'bev_area_m2', k):>11.0f}"
        )
    pairs = list(rows[0]["cos"])
    if pairs:
        print("cosine between objectives' encoder gradients (per batch: mean [min, max]; summed over batches):")
        for p in pairs:
            v = [r["cos"][p] for r in rows]
            print(
                f"  {p:<16} {np.mean(v):+.3f} [{np.min(v):+.3f}, {np.max(v):+.3f}]   summed: {res['mean_gradient']['cos'][p]:+.3f}"
            )
    mg = res["mean_gradient"]
    print(
        "gradient summed over the batches: "
        + ", ".join(f"{k} |g|/batch {mg['enc_norm'][k]:.3e} proj share {mg['proj_share'][k]:.3f}" for k in ks)
    )
    tn = [r["total_grad_norm"] for r in rows]
    print(
        f"total gradient norm (all parameters): mean {np.mean(tn):.3f} [{np.min(tn):.3f}, {np.max(tn):.3f}], grad_clip {grad_clip}"
        + (
            f"; ego positive fraction {np.mean([r['ego_pos_frac'] for r in rows]):.3f}"
            if "ego_pos_frac" in rows[0]
            else ""
        )
    )
    print("norm share per encoder block (|g_k| over the block / sum over objectives):")
    print(f"  {'block':<18} " + " ".join(f"{k:>9}" for k in ks))
    for i, name in enumerate(res["blocks"]):
        tot = [sum(r["block_norm"][k][i] for k in ks) + 1e-30 for r in rows]
        print(
            f"  {name:<18} "
            + " ".join(f"{np.mean([r['block_norm'][k][i] / t for r, t in zip(rows, tot)]):>9.3f}" for k in ks)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--variant", default="gasp", help="variant measured at initialisation")
    parser.add_argument(
        "--seed", type=int, default=0, help="initialisation and batch-draw seed, as pre-training's --seed"
    )
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None, help="default: pretrain.train.batch_size")
    parser.add_argument("--store", type=Path, default=Path("data/store"))
    parser.add_argument("--occupancy", type=Path, default=Path("data/targets/occupancy"))
    parser.add_argument("--dino", type=Path, default=Path("data/targets/dino/teacher"))
    parser.add_argument(
        "--model", type=Path, action="append", default=[], help="trained model folder(s) to measure as well"
    )
    parser.add_argument("--no-init", action="store_true", help="skip the measurement at initialisation")
    parser.add_argument("--loss", action="append", default=[], metavar="KEY=VALUE", help="override pretrain.loss keys")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write every per-batch number here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = read_params(args.params)
    scene = from_dict(SceneConfig, params["scene"], "scene", strict=True)
    cfg = pretrain_config_from_dict(params["pretrain"], strict=True)
    splits = from_dict(SplitsConfig, params["splits"], "splits", strict=True)
    loss = dict(vars(cfg.loss))
    for kv in args.loss:
        key, value = kv.split("=", 1)
        loss[key] = (
            value if key == "dino_loss" else (value.lower() == "true" if key == "dino_standardize" else float(value))
        )
    loss_cfg = from_dict(LossConfig, loss, "pretrain.loss")
    tc = cfg.train if args.batch_size is None else replace(cfg.train, batch_size=args.batch_size)

    def dataset(var, model_cfg, model_scene):
        return PretrainDataset(
            args.store,
            args.occupancy,
            args.dino if var.dino else None,
            model_scene,
            model_cfg.voxelizer,
            tc.queries,
            var,
            splits.pretrain_logs(),
            dino_standardize=loss_cfg.dino_standardize,
        )

    results = {}
    runs: list[tuple[str, GaspModel | None, Path | None]] = (
        [] if args.no_init else [(f"{args.variant} at initialisation (seed {args.seed})", None, None)]
    )
    runs += [(f"trained {m}", None, m) for m in args.model]
    for title, _, path in runs:
        if path is None:
            var = variant(args.variant)
            data = dataset(var, cfg.model, scene)
            torch.manual_seed(args.seed)
            model = GaspModel(scene, cfg.model, var, data.dino_dim)
        else:
            model = load_pretrained(path)
            var = model.variant
            data = dataset(var, model.cfg, model.scene)
        if var.dino:
            model.dino_mean.copy_(torch.from_numpy(data.dino_mean))
            model.dino_std.copy_(torch.from_numpy(data.dino_std))
        items = [batch_items(s, 0, 1, len(data), tc, args.seed) for s in range(args.batches)]
        res = measure(model, data, loss_cfg, items, scene)
        print_report(title, res, loss_cfg, tc.grad_clip)
        results[title] = res
    if args.json is not None:
        args.json.write_text(json.dumps({"loss": vars(loss_cfg), "results": results}, indent=1))


if __name__ == "__main__":
    main()
