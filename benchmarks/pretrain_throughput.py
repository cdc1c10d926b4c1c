"""Pre-training throughput: samples/s, achieved GFLOP/s against this machine's matmul peak, peak memory.

    python benchmarks/pretrain_throughput.py [--variant gasp] [--steps 20]

Uses the ``scene`` and ``pretrain`` params and the targets in data/ (run ``dvc repro occupancy_labels
dino_targets`` first). Measured in one run: (1) optimizer steps on one fixed batch (model compute
only; FLOPs of forward + backward counted by torch's FlopCounterMode), (2) the same number of steps
fed by the real data loader, (3) a large fp32 matmul, the practical peak.
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from gasp_core.config import from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.models import GaspModel, variant
from gasp_core.models.losses import pretrain_losses
from gasp_core.perf import matmul_peak_gflops, peak_memory_mib
from gasp_core.teacher.dinov2 import resolve_device
from gasp_core.train.dataset import PretrainDataset
from gasp_core.train.pretrain import _StepSampler, pretrain_config_from_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--variant", default="gasp")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    params = yaml.safe_load(open(args.params))
    scene = from_dict(SceneConfig, params["scene"], "scene")
    cfg = pretrain_config_from_dict(params["pretrain"])
    tc, var = cfg.train, variant(args.variant)
    device = resolve_device(tc.device)
    data = PretrainDataset("data/store", "data/targets/occupancy", "data/targets/dino" if var.dino else None, scene,
                           cfg.model.voxelizer, tc.queries, var, dino_standardize=cfg.loss.dino_standardize)
    torch.manual_seed(0)
    model = GaspModel(scene, cfg.model, var, data.dino_dim).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = torch.utils.data.DataLoader(data, batch_sampler=_StepSampler(0, args.steps + 2, 0, 1, len(data), tc),
                                         num_workers=tc.num_workers, multiprocessing_context="spawn" if tc.num_workers else None)

    def step(batch):
        out = model(batch["voxels"], batch["occupancy_q"], batch.get("ego_q"), batch.get("dino_q"))
        loss = pretrain_losses(out, batch, cfg.loss)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    it = iter(loader)
    fixed = {k: v.to(device) for k, v in next(it).items()}
    step(fixed)  # warm-up
    with FlopCounterMode(display=False) as counter:
        step(fixed)
    flops = counter.get_total_flops()
    t = time.perf_counter()
    for _ in range(args.steps):
        step(fixed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    compute_s = time.perf_counter() - t
    t = time.perf_counter()
    n = 0
    for batch in it:
        step({k: v.to(device) for k, v in batch.items()})
        n += 1
    loaded_s = time.perf_counter() - t
    peak = matmul_peak_gflops(device)
    achieved = flops * args.steps / compute_s / 1e9
    bs = tc.batch_size
    print(f"pre-training {args.variant} on {device}: batch {bs}, grid {tuple(fixed['voxels'].shape[1:])}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {flops / 1e9:.1f} GFLOP per step")
    print(f"  compute only (fixed batch): {args.steps * bs / compute_s:6.2f} samples/s, {achieved:6.1f} GFLOP/s = "
          f"{achieved / peak:.2f} of the fp32 matmul peak measured here ({peak:.1f} GFLOP/s)")
    print(f"  with the data loader      : {n * bs / loaded_s:6.2f} samples/s ({tc.num_workers} loader worker(s))")
    print(f"  peak memory               : {peak_memory_mib(device):6.0f} MiB ({'GPU allocated' if device.type == 'cuda' else 'process RSS'})")


if __name__ == "__main__":
    main()
