"""torchrun / DDP setup: one process per device, gloo on CPU and nccl on CUDA."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from gasp_core.teacher.dinov2 import resolve_device


@dataclass
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process: torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK), else
    SLURM's for a process started by ``srun`` directly (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; the rendezvous then
    comes from MASTER_ADDR / MASTER_PORT, which deploy/slurm sets), else a single process."""
    env = os.environ
    if "WORLD_SIZE" in env:
        return int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env and int(env["SLURM_NTASKS"]) > 1:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        # torch.distributed's env:// rendezvous reads these names
        env.setdefault("RANK", str(rank))
        env.setdefault("WORLD_SIZE", str(world))
        env.setdefault("LOCAL_RANK", env.get("SLURM_LOCALID", "0"))
        env.setdefault("MASTER_PORT", "29500")
        if "MASTER_ADDR" not in env:
            raise RuntimeError("SLURM launch without MASTER_ADDR: export it (the first node of the allocation)")
        return rank, world, int(env["LOCAL_RANK"])
    return 0, 1, 0


def setup(device: str) -> DistInfo:
    """Join the process group when launched by torchrun or srun with more than one process; otherwise a single
    process."""
    rank, world, local = launch_env()
    dev = resolve_device(device)
    if world == 1:
        return DistInfo(0, 1, dev)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def from_rank0(obj):
    """``obj`` as rank 0 has it, on every rank (itself when there is no process group)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_across(value: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value.detach()
