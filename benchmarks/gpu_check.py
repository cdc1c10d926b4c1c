"""The CUDA path, checked where a GPU exists (``make gpu-check``; under ``torchrun`` for DDP on every visible GPU).

    make gpu-check                       # torchrun --nproc_per_node=<visible GPUs> benchmarks/gpu_check.py
    python benchmarks/gpu_check.py       # one GPU

On synthetic inputs at the ``paper`` model's size (configs/model/paper.yaml: a 400 x 400 BEV grid, resnet34 width
128, 256-wide decoders): (1) pre-training steps of the GASP model (all three objectives) with bf16 autocast and, under
torchrun, DDP, through the same step as the pipeline (gasp_core.optim.run_steps); (2) the teacher's feature
extraction (timm DINOv2 ViT-S/14 with registers, random weights, 448-pixel images); (3) the training step's FLOP rate
(FLOPs counted by torch's FlopCounterMode) against this GPU's measured bf16 matmul peak. Prints the figures on rank
0; exits 1 on a non-finite loss or a CUDA error, and 2 where there is no CUDA device.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gasp_core.config import from_dict  # noqa: E402
from gasp_core.data.samples import SceneConfig  # noqa: E402
from gasp_core.models.config import LossConfig, ModelConfig, variant  # noqa: E402
from gasp_core.models.gasp_model import GaspModel  # noqa: E402
from gasp_core.models.losses import pretrain_losses  # noqa: E402
from gasp_core.models.voxelizer import channels, grid_shape  # noqa: E402
from gasp_core.optim import run_steps, warmup_cosine  # noqa: E402
from gasp_core.train import distributed  # noqa: E402


def matmul_peak_tflops(device: torch.device, n: int = 8192, reps: int = 20) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def synthetic_batch(scene: SceneConfig, cfg: ModelConfig, batch: int, queries: int, dino_dim: int, g: torch.Generator):
    rows, cols = grid_shape(scene, cfg.voxelizer)
    x0, x1, y0, y1, z0, z1 = scene.extent_m

    def q(dims: int) -> torch.Tensor:
        lo = torch.tensor([x0, y0, z0, 0.0][: dims - 1] + [0.0])
        hi = torch.tensor([x1, y1, z1, scene.horizon_s][: dims - 1] + [scene.horizon_s])
        return lo + (hi - lo) * torch.rand(batch, queries, dims, generator=g)

    ego = q(4)[..., [0, 1, 3]]
    return {
        "voxels": (torch.rand(batch, channels(scene, cfg.voxelizer), rows, cols, generator=g) < 0.02).float(),
        "occupancy_q": q(4),
        "occupancy_label": (torch.rand(batch, queries, generator=g) < 0.4).float(),
        "ego_q": ego,
        "ego_label": (torch.rand(batch, queries, generator=g) < 0.4).float(),
        "dino_q": q(4),
        "dino_target": torch.randn(batch, queries, dino_dim, generator=g),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--queries", type=int, default=8192)
    p.add_argument("--images", type=int, default=64)
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device visible; nothing to check on this machine", file=sys.stderr)
        return 2
    info = distributed.setup("cuda")
    device = info.device
    params = yaml.safe_load((ROOT / "configs" / "model" / "paper.yaml").read_text())
    cfg = from_dict(ModelConfig, params["pretrain"]["model"], "pretrain.model")
    scene = SceneConfig(extent_m=(-40.0, 40.0, -40.0, 40.0, -3.0, 5.0), past_sweeps=5, horizon_s=3.0)
    dino_dim = 64
    model = GaspModel(scene, cfg, variant("gasp"), dino_dim).to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if info.world_size > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = warmup_cosine(opt, 5, a.steps)
    g = torch.Generator().manual_seed(info.rank)
    batches = [synthetic_batch(scene, cfg, a.batch_size, a.queries, dino_dim, g) for _ in range(2)]
    losses: list[float] = []

    def loss_of(batch: dict) -> dict:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        out = net(batch["voxels"], batch["occupancy_q"], batch["ego_q"], batch["dino_q"])
        with torch.autocast(device_type="cuda", enabled=False):
            return pretrain_losses({k: v.float() for k, v in out.items()}, batch, LossConfig())

    def on_step(step: int, loss: dict, lr: float) -> None:
        losses.append(float(distributed.mean_across(loss["total"])))

    def steps(first: int, last: int) -> float:
        """Seconds for training steps first..last-1 (the same step as the pipeline's), synchronised."""
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        batches_ = (batches[i % 2] for i in range(first, last))
        run_steps(
            batches_,
            loss_of,
            opt,
            sched,
            model.parameters(),
            grad_clip=1.0,
            device=device,
            start=first,
            on_step=on_step,
        )
        torch.cuda.synchronize(device)
        return time.perf_counter() - t

    warm = 5
    steps(0, warm)  # warm-up: kernels chosen, allocator filled
    step_s = steps(warm, a.steps) / (a.steps - warm)

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss_of(batches[0])["total"].backward()
    opt.zero_grad(set_to_none=True)
    step_tflop = counter.get_total_flops() / 1e12
    peak = matmul_peak_tflops(device)

    from gasp_core.teacher.dinov2 import DinoTeacher, TeacherConfig

    teacher = DinoTeacher(TeacherConfig(weights="random", device="cuda", max_side_px=448)).to(device).eval()
    images = torch.rand(16, 3, 448, 448, device=device)
    with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        teacher(images)
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        for _ in range(max(1, a.images // 16)):
            feats = teacher(images)
        torch.cuda.synchronize(device)
    images_per_s = 16 * max(1, a.images // 16) / (time.perf_counter() - t)
    finite = all(math.isfinite(v) for v in losses) and bool(torch.isfinite(feats.float()).all())
    if info.is_main:
        name = torch.cuda.get_device_name(device)
        print(f"device                : {name} x {info.world_size} (DDP: {info.world_size > 1}), bf16 autocast")
        print(f"pre-training step     : {step_s * 1e3:.1f} ms ({a.batch_size} samples x {a.queries} queries / GPU)")
        print(f"loss first -> last    : {losses[0]:.4f} -> {losses[-1]:.4f} (finite: {finite})")
        print(f"step FLOPs            : {step_tflop:.2f} TFLOP (fwd + bwd, FlopCounterMode)")
        print(f"step FLOP rate        : {step_tflop / step_s:.1f} TFLOP/s = {step_tflop / step_s / peak:.1%} of the")
        print(f"bf16 matmul peak      : {peak:.1f} TFLOP/s (8192^3 matmuls, measured here)")
        print(f"teacher features      : {images_per_s:.1f} images/s (ViT-S/14 reg4, 448 px, bf16, batch 16)")
    distributed.teardown()
    return 0 if finite else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except torch.cuda.CudaError as exc:  # pragma: no cover - needs a GPU
        print(f"gpu-check: CUDA error: {exc}", file=sys.stderr)
        sys.exit(1)
