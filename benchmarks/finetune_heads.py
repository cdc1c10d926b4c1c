"""Fine-tuning cost per task: frozen encoder (cached BEV features) against full fine-tuning, in one run.

    python benchmarks/finetune_heads.py [--init gasp] [--steps 10]

Uses the ``scene``, ``splits`` and ``finetune`` params, the task labels and a pre-trained model (run
``dvc repro task_labels pretrain`` first). For each task: milliseconds per optimizer step with the encoder
frozen (features computed once, then read from the cache) and with it training, the achieved GFLOP/s of the
frozen step (forward + backward FLOPs counted by torch's FlopCounterMode) and the fp32 matmul peak.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from gasp_core.config import from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.perf import matmul_peak_gflops
from gasp_core.tasks.build import TaskLabels
from gasp_core.tasks.config import SplitsConfig, finetune_config_from_dict
from gasp_core.tasks.finetune import Features, _feat_dim, items_of, load_encoder, make_task, pretrained_dir
from gasp_core.teacher.dinov2 import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--init", default="gasp")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    params = yaml.safe_load(open(args.params))
    scene = from_dict(SceneConfig, params["scene"], "scene")
    splits = from_dict(SplitsConfig, params["splits"], "splits")
    cfg = finetune_config_from_dict(params["finetune"])
    device = resolve_device(cfg.device)
    labels = TaskLabels(Path("data/tasks/labels"))
    items = items_of(labels, splits.train)
    init_dir = pretrained_dir(Path("models/pretrain") / args.init, params["pretrain"]["seeds"][0])
    rng = np.random.default_rng(0)
    batches = [[items[i] for i in rng.integers(len(items), size=cfg.batch_size)] for _ in range(args.steps + 1)]
    frozen = Features(load_encoder(init_dir, device), labels, device, True)
    t = time.perf_counter()
    frozen(items)
    cache_ms = (time.perf_counter() - t) / len(items) * 1e3
    peak = matmul_peak_gflops(device)
    print(
        f"encoder forward for the feature cache: {cache_ms:.1f} ms/sample ({len(items)} samples); "
        f"fp32 matmul peak {peak:.1f} GFLOP/s on {device}"
    )
    print(
        f"{'task':<20} {'frozen ms/step':>15} {'full ms/step':>13} {'full/frozen':>12} {'frozen GFLOP/s':>15} {'of peak':>8}"
    )
    for name in cfg.tasks:
        task = make_task(name, labels, Path("data/targets/occupancy"), scene, cfg)
        res = {}
        for mode in ("frozen", "full"):
            torch.manual_seed(0)
            feats = frozen if mode == "frozen" else Features(load_encoder(init_dir, device), labels, device, False)
            feats.encoder.train(mode == "full")
            head = task.head(_feat_dim(feats.encoder)).to(device)
            params_ = list(head.parameters()) + (list(feats.encoder.parameters()) if mode == "full" else [])
            opt = torch.optim.AdamW(params_, lr=1e-4)

            def step(batch):
                loss = task.loss(head, feats(batch), batch, np.random.default_rng(1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            step(batches[0])  # warm-up
            t = time.perf_counter()
            for b in batches[1:]:
                step(b)
            res[mode] = (time.perf_counter() - t) / args.steps * 1e3
            if mode == "frozen":
                with FlopCounterMode(display=False) as counter:
                    step(batches[1])
                gflops = counter.get_total_flops() / 1e9 / (res[mode] / 1e3)
        print(
            f"{name:<20} {res['frozen']:>15.1f} {res['full']:>13.1f} {res['full'] / res['frozen']:>12.1f} "
            f"{gflops:>15.1f} {gflops / peak:>8.2f}"
        )


if __name__ == "__main__":
    main()
