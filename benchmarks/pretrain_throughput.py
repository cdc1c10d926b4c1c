"""Pre-training throughput: samples/s, achieved GFLOP/s against this machine's matmul peak, peak memory.

    python benchmarks/pretrain_throughput.py [--variant gasp] [--steps 20] [--epochs 3]

Uses the ``scene``, ``splits`` and ``pretrain`` params and the targets in data/ (run ``dvc repro occupancy_labels
dino_targets`` first). Measured in one run: (1) optimizer steps on one fixed batch (model compute
only; FLOPs of forward + backward counted by torch's FlopCounterMode), (2) ``--epochs`` epochs of the training logs
fed by the stage's own data loader (``make_loader``, ``pretrain.train.num_workers`` and ``cache_mib``): the first
epoch fills the workers' caches, the later ones are what the rest of a run sees; (3) a large fp32 matmul, the
practical peak.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
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
from gasp_core.train.pretrain import _StepSampler, make_loader, pretrain_config_from_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--variant", default="gasp")
    parser.add_argument("--steps", type=int, default=12, help="steps per interleaved block")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the training logs through the loader")
    parser.add_argument("--cache-mib", type=float, default=None, help="override pretrain.train.cache_mib (0: no cache)")
    args = parser.parse_args()
    params = yaml.safe_load(open(args.params))
    scene = from_dict(SceneConfig, params["scene"], "scene")
    cfg = pretrain_config_from_dict(params["pretrain"])
    tc, var = cfg.train, variant(args.variant)
    if args.cache_mib is not None:
        tc.cache_mib = args.cache_mib
    device = resolve_device(tc.device)
    data = PretrainDataset(
        "data/store",
        "data/targets/occupancy",
        "data/targets/dino/teacher" if var.dino else None,
        scene,
        cfg.model.voxelizer,
        tc.queries,
        var,
        logs=params["splits"]["train"],
        dino_standardize=cfg.loss.dino_standardize,
        cache_mib=tc.cache_mib,
    )
    torch.manual_seed(0)
    model = GaspModel(scene, cfg.model, var, data.dino_dim).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    epoch_steps = -(-len(data) // tc.batch_size)
    loader = make_loader(
        data, _StepSampler(0, 1 + args.epochs * epoch_steps + args.steps, 0, 1, len(data), tc, 0), tc.num_workers
    )

    def step(batch):
        out = model(batch["voxels"], batch["occupancy_q"], batch.get("ego_q"), batch.get("dino_q"))
        loss = pretrain_losses(out, batch, cfg.loss)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    it = iter(loader)
    fixed = {k: v.to(device) for k, v in next(it).items()}
    step(fixed)  # warm-up
    with FlopCounterMode(display=False) as counter:
        step(fixed)
    flops = counter.get_total_flops()
    t = time.perf_counter()
    for _ in range(epoch_steps - 1):  # the first epoch through the loader fills the workers' caches
        step({k: v.to(device) for k, v in next(it).items()})
    sync()
    first_s = time.perf_counter() - t
    # then blocks of compute-only steps and of loader-fed steps, interleaved so that a machine whose speed drifts
    # (shared cores, thermal) slows both alike; per-block step times, medians compared
    fixed_times, loaded_times = [], []
    ahead = 2 * max(1, tc.num_workers)  # DataLoader's default prefetch_factor (2) per worker
    if args.steps <= ahead:
        raise SystemExit(f"--steps must exceed the {ahead} batches the loader prefetches")
    remaining = (args.epochs - 1) * epoch_steps
    while remaining > 0:
        k = max(min(args.steps, remaining), ahead + 1)
        t = time.perf_counter()
        for _ in range(k):
            step(fixed)
        sync()
        fixed_times.append((time.perf_counter() - t) / k)
        # the workers prefetch up to 2 batches each during the compute-only block: those steps are not timed
        for _ in range(ahead):
            step({kk: v.to(device) for kk, v in next(it).items()})
        t = time.perf_counter()
        for _ in range(k - ahead):
            step({kk: v.to(device) for kk, v in next(it).items()})
        sync()
        loaded_times.append((time.perf_counter() - t) / (k - ahead))
        remaining -= k
    compute_s = float(np.median(fixed_times)) * args.steps
    peak = matmul_peak_gflops(device)
    achieved = flops * args.steps / compute_s / 1e9
    bs = tc.batch_size
    print(
        f"pre-training {args.variant} on {device}: batch {bs}, grid {tuple(fixed['voxels'].shape[1:])}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {flops / 1e9:.1f} GFLOP per step"
    )
    print(
        f"  compute only (fixed batch): {args.steps * bs / compute_s:6.2f} samples/s, {achieved:6.1f} GFLOP/s = "
        f"{achieved / peak:.2f} of the fp32 matmul peak measured here ({peak:.1f} GFLOP/s)"
    )
    compute = args.steps * bs / compute_s
    later = bs / float(np.median(loaded_times))
    ratios = np.array(fixed_times) / np.array(loaded_times)
    print(
        f"  with the data loader      : {tc.num_workers} worker(s), cache {tc.cache_mib:g} MiB each, {len(data)} training "
        f"samples = {epoch_steps} steps an epoch"
    )
    cold = (epoch_steps - 1) * bs / first_s
    print(f"    first epoch (cold cache): {cold:6.2f} samples/s = {cold / compute:.2f} of compute only")
    print(
        f"    epochs 2-{args.epochs}, {len(loaded_times)} blocks of {args.steps} steps interleaved with compute-only blocks (the "
        f"first {ahead} of each, prefetched meanwhile, untimed): "
        f"{later:6.2f} samples/s; paired with the compute-only block before it, each loader-fed block runs at a median "
        f"{np.median(ratios):.2f} of compute-only speed (blocks: {np.min(ratios):.2f} to {np.max(ratios):.2f})"
    )
    print(
        f"  peak memory               : {peak_memory_mib(device):6.0f} MiB ({'GPU allocated' if device.type == 'cuda' else 'process RSS'})"
    )


if __name__ == "__main__":
    main()
