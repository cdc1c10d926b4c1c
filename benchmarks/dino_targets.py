"""DINO target throughput: teacher images/s (and its GFLOP/s against this machine's matmul peak) and lifted points/s.

    python benchmarks/dino_targets.py [--store data/store] [--frames 64] [--model vit_small_patch14_reg4_dinov2]

Measured in this run on the store's camera frames: the teacher forward pass alone (FLOPs counted by
torch's FlopCounterMode, compared to a large fp32 matmul timed here), the lidar lifting alone, and
the whole per-frame path of the stage (image decode, teacher, lift, bilinear sampling, PCA).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from gasp_core.data.store import LogStore
from gasp_core.perf import matmul_peak_gflops
from gasp_core.targets.dino import _batches, list_frames, load_image
from gasp_core.targets.dino_lift import LiftConfig, lift_frame
from gasp_core.teacher.dinov2 import DinoTeacher, TeacherConfig, resolve_device, sample_features
from gasp_core.teacher.pca import FeaturePCA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="data/store")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--model", default="vit_small_patch14_reg4_dinov2")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    store = LogStore(args.store)
    frames = list_frames(store, 1)[: args.frames]
    device = resolve_device("auto")
    teacher = DinoTeacher(TeacherConfig(model=args.model, weights="random", batch_size=args.batch_size)).to(device)
    batches = list(_batches(frames, args.batch_size))
    images = [torch.stack([load_image(f.image_path) for f in b]) for b in batches]
    h, w = images[0].shape[-2:]
    with FlopCounterMode(display=False) as counter:
        teacher(images[0][:1].to(device))
    flops_per_image = counter.get_total_flops()

    teacher(images[0].to(device))  # warm-up
    t = time.perf_counter()
    maps = [teacher(x.to(device)) for x in images]
    if device.type == "cuda":
        torch.cuda.synchronize()
    teacher_s = time.perf_counter() - t

    logs = {lid: store.log(lid) for lid in {f.log_id for f in frames}}
    cfg = LiftConfig(max_points_per_frame=0)
    t = time.perf_counter()
    lifted = [lift_frame(logs[f.log_id], f.camera, f.camera_ns, w, h, cfg) for f in frames]
    lift_s = time.perf_counter() - t
    n_points = sum(len(x.t_ns) for x in lifted if x is not None)

    pca = FeaturePCA.fit(torch.cat([m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]) for m in maps]).cpu(), 64)
    t = time.perf_counter()
    k = 0
    for b, fmap in zip(batches, maps):
        for j, f in enumerate(b):
            if lifted[k] is not None:
                pca.transform(sample_features(fmap[j], lifted[k].uv, (h, w)))
            k += 1
    sample_s = time.perf_counter() - t

    peak = matmul_peak_gflops(device)
    achieved = flops_per_image * len(frames) / teacher_s / 1e9
    n = len(frames)
    print(
        f"DINO targets: {n} frames of {w}x{h} px, teacher {args.model} (input {teacher.input_size(h, w)}), device {device}"
    )
    print(
        f"  teacher forward          : {n / teacher_s:8.2f} images/s  {achieved:7.1f} GFLOP/s = {achieved / peak:.2f} of the "
        f"fp32 matmul peak measured here ({peak:.1f} GFLOP/s); {flops_per_image / 1e9:.2f} GFLOP/image"
    )
    print(f"  lift (project, z-buffer) : {n_points / lift_s:8.0f} points/s  ({n_points / n:.0f} visible points/frame)")
    print(f"  sample + PCA             : {n_points / sample_s:8.0f} points/s")
    print(
        f"  whole frame path         : {n / (teacher_s + lift_s + sample_s):8.2f} images/s, "
        f"{n_points / (teacher_s + lift_s + sample_s):.0f} lifted points/s (image decode excluded)"
    )


if __name__ == "__main__":
    main()
