"""The pre-training loop: AdamW, warm-up + cosine decay, clipping, bf16 autocast on CUDA, DDP, resumable checkpoints."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from gasp_core import card
from gasp_core.config import ConfigError, from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.io import atomic_path
from gasp_core.models.config import LossConfig, ModelConfig, variant
from gasp_core.models.gasp_model import GaspModel
from gasp_core.models.losses import pretrain_losses
from gasp_core.optim import run_steps, warmup_cosine
from gasp_core.progress import progress as progress_bar
from gasp_core.train import distributed
from gasp_core.train.dataset import PretrainDataset, QueryCounts
from gasp_core.train.transport import RingCollate

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 200
    """Optimizer steps."""
    batch_size: int = 4
    """Samples per step and process (the global batch is batch_size x processes)."""
    lr: float = 2e-3
    """Peak learning rate (AdamW)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    warmup_steps: int = 20
    """Linear warm-up before the cosine decay to zero."""
    grad_clip: float = 1.0
    """Gradient norm clipping (0 disables)."""
    queries: QueryCounts = field(default_factory=QueryCounts)
    checkpoint_every: int = 100
    """Steps between resumable checkpoints."""
    log_every: int = 10
    """Steps between logged metrics."""
    num_workers: int = 1
    """Data-loading processes per training process."""
    cache_mib: float = 1024.0
    """Memory per data-loading process for decoded inputs (sweeps, query tables, DINO points, poses), reused every
    epoch; 0 rereads them from disk on every draw. Results are identical either way."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda'."""
    world_size: int = 1
    """Processes the run is launched on (torchrun's WORLD_SIZE, or srun's SLURM_NTASKS): the global batch is
    batch_size x world_size, so it is part of the run (its fingerprint, its checkpoints). A launch on another number
    of processes is refused, and so is a checkpoint written by one."""


@dataclass
class PretrainConfig:
    variants: list[str] = field(default_factory=lambda: ["scratch", "uno", "gasp"])
    """Variants that dvc.yaml builds (gasp_core.models.config.VARIANTS)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Pre-training seeds: dvc.yaml trains every variant once per seed (``models/pretrain/<variant>/seed_<s>``) and
    fine-tuning runs on each, so the comparison's intervals cover pre-training variance."""
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def pretrain_config_from_dict(data, strict: bool = False) -> PretrainConfig:
    cfg = from_dict(PretrainConfig, data, "pretrain", strict)
    for name in cfg.variants:
        variant(name)
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"pretrain.seeds = {cfg.seeds}: give at least one seed, each once")
    return cfg


def batch_items(step: int, rank: int, world: int, n: int, cfg: TrainConfig, seed: int = 0) -> list[tuple[int, int]]:
    """The (sample index, draw seed) pairs of one step on one rank: epochs are seeded permutations."""
    per_step = cfg.batch_size * world
    start = step * per_step + rank * cfg.batch_size
    items = []
    for g in range(start, start + cfg.batch_size):
        epoch, pos = divmod(g, n)
        items.append((int(_permutation(seed, epoch, n)[pos]), int(np.random.default_rng([seed, g]).integers(2**31))))
    return items


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    perm.flags.writeable = False
    return perm


class _StepSampler(torch.utils.data.Sampler):
    def __init__(self, first: int, last: int, rank: int, world: int, n: int, cfg: TrainConfig, seed: int) -> None:
        self.first, self.last, self.rank, self.world, self.n, self.cfg, self.seed = (
            first,
            last,
            rank,
            world,
            n,
            cfg,
            seed,
        )

    def __iter__(self):
        for step in range(self.first, self.last):
            yield batch_items(step, self.rank, self.world, self.n, self.cfg, self.seed)

    def __len__(self) -> int:
        return self.last - self.first


LOADER_NICENESS = 10
"""Scheduling priority the data-loading processes give up (``os.nice``)."""


def _single_threaded_worker(_: int) -> None:
    # a loader worker's NumPy/BLAS calls are small: threads would only contend with the training step for the cores;
    # and it runs niced, filling the cores' idle gaps of the step rather than stalling its threads
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    os.nice(LOADER_NICENESS)


PREFETCH_BATCHES = 2
"""Batches each loader worker may have requested ahead of the training loop (DataLoader's ``prefetch_factor``)."""


def make_loader(
    data: PretrainDataset, sampler: torch.utils.data.Sampler, num_workers: int
) -> torch.utils.data.DataLoader:
    """The pre-training loader: one batch per sampler item, workers spawned (forking after torch has started its
    thread pools can deadlock), single-threaded, and kept for the whole run so their caches fill once; batches
    cross from the workers through a ring of shared-memory slots (:mod:`gasp_core.train.transport`)."""
    workers = num_workers > 0
    return torch.utils.data.DataLoader(
        data,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=RingCollate(PREFETCH_BATCHES * num_workers + 2),
        prefetch_factor=PREFETCH_BATCHES if workers else None,
        multiprocessing_context="spawn" if workers else None,
        worker_init_fn=_single_threaded_worker if workers else None,
    )


def inputs_digest(*dirs: Path | None) -> str:
    """Hash of the inputs' manifests and per-log meta files (which carry their own input fingerprints)."""
    h = hashlib.sha1()
    for d in dirs:
        if d is None:
            continue
        for path in (
            sorted(Path(d).glob("*.json")) + sorted(Path(d).glob("*/meta.json")) + sorted(Path(d).glob("*.safetensors"))
        ):
            h.update(str(path.relative_to(d)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def code_digest() -> str:
    """Hash of the gasp_core sources that pre-training runs (this module and its import closure, the files its
    stage depends on in dvc.yaml): a checkpoint written by other code is never resumed, and an edit elsewhere in
    the package (a task head, the simulator) keeps checkpoints resumable."""
    from gasp_core.closure import ROOT, digest, import_closure

    here = Path(__file__).resolve()
    return digest(sorted(set(import_closure(here)) | {here.relative_to(ROOT)}))


def run_fingerprint(
    variant_name: str,
    scene: SceneConfig,
    cfg: PretrainConfig,
    inputs: str,
    logs: list[str] | None = None,
    seed: int = 0,
) -> str:
    """What a checkpoint must share with this run to be resumed: variant, settings, inputs and code."""
    blob = json.dumps(
        {
            "variant": variant_name,
            "scene": asdict(scene),
            "model": asdict(cfg.model),
            "loss": asdict(cfg.loss),
            "train": {
                k: v
                for k, v in asdict(cfg.train).items()
                if k not in ("num_workers", "checkpoint_every", "log_every", "cache_mib")
            },
            "inputs": inputs,
            "logs": logs,
            "seed": seed,
            "code": code_digest(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _save_checkpoint(
    path: Path, model, opt, sched, step: int, fingerprint: str, history: dict[str, list[float]], world_size: int = 1
) -> None:
    with atomic_path(path) as tmp:
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "step": step,
                "fingerprint": fingerprint,
                "history": history,
                "world_size": world_size,
            },
            tmp,
        )


def _latest_checkpoint(ckpt_dir: Path, fingerprint: str, world_size: int = 1) -> dict | None:
    found = sorted(ckpt_dir.glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    for path in reversed(found):
        state = torch.load(path, map_location="cpu", weights_only=True)
        if int(state.get("world_size", 1)) != world_size:
            raise ValueError(
                f"{path} was written by a run on {state.get('world_size', 1)} processes; this one has {world_size}: "
                "the global batch and the data order differ, so it cannot resume it. Launch on the same number of "
                "processes, or give another --checkpoints folder to start afresh."
            )
        if state.get("fingerprint") == fingerprint:
            return state
        log.warning("ignoring checkpoint %s: it belongs to a run with other settings", path)
    return None


def pretrain(
    variant_name: str,
    *,
    store_dir: Path,
    occupancy_dir: Path,
    dino_dir: Path | None,
    out_dir: Path,
    scene: SceneConfig,
    cfg: PretrainConfig,
    ckpt_dir: Path,
    live_dir: Path | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    logs: list[str] | None = None,
    seed: int = 0,
) -> dict:
    """Train one variant on ``logs`` (default: every log of the store); writes ``out_dir`` (safetensors +
    config.json) and returns the final metrics. A variant with no objective (``scratch``) saves its seeded
    initialisation: the encoder the from-scratch baseline fine-tunes.

    ``stop_after`` ends the run early (after writing a checkpoint) as an interruption would; a later call
    resumes from the newest checkpoint whose settings match.
    """
    var = variant(variant_name)
    tc = cfg.train
    torch.manual_seed(seed)
    if not var.trains:
        if int(os.environ.get("RANK", "0")) == 0:
            GaspModel(scene, cfg.model, var).save_pretrained(out_dir)
            card.pretrain_card(out_dir, variant_name, var, cfg, seed, store_dir, None, logs, {}, 0, None)
            if live_dir is not None:  # the stage's dvclive outputs exist for every variant: one step at learning rate 0
                from dvclive import Live

                with Live(str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=None, report=None) as live:
                    live.log_metric("lr", 0.0, timestamp=False)
        return {"variant": variant_name, "steps": 0, "samples_seen": 0}
    info = distributed.setup(tc.device)
    if info.world_size != tc.world_size:
        raise ConfigError(
            f"pretrain.train.world_size = {tc.world_size}, but this run was launched on {info.world_size} processes: "
            "set world_size to the launch's (it is part of the run: the global batch is batch_size x world_size)"
        )
    data = PretrainDataset(
        store_dir,
        occupancy_dir,
        dino_dir if var.dino else None,
        scene,
        cfg.model.voxelizer,
        tc.queries,
        var,
        logs,
        dino_standardize=cfg.loss.dino_standardize,
        cache_mib=tc.cache_mib,
    )
    model = GaspModel(scene, cfg.model, var, data.dino_dim)
    if var.dino:
        model.dino_mean.copy_(torch.from_numpy(data.dino_mean))
        model.dino_std.copy_(torch.from_numpy(data.dino_std))
    model.to(info.device)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = warmup_cosine(opt, tc.warmup_steps, tc.steps)
    fingerprint = run_fingerprint(
        variant_name, scene, cfg, inputs_digest(store_dir, occupancy_dir, dino_dir if var.dino else None), logs, seed
    )
    ckpt_dir = Path(ckpt_dir)
    start = 0
    history: dict[str, list[float]] = {}  # per-step losses and learning rate, from step 0
    # rank 0 decides where to resume (other nodes may hold no checkpoint folder at all) and every rank takes its state
    found: tuple[dict | None, str | None] = (None, None)
    if info.is_main and ckpt_dir.is_dir():
        try:
            found = (_latest_checkpoint(ckpt_dir, fingerprint, info.world_size), None)
        except ValueError as exc:  # every rank stops with rank 0's reason, none waits for it
            found = (None, str(exc))
    state, error = distributed.from_rank0(found)
    if error:
        raise ValueError(error)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["step"])
        history = {k: list(v) for k, v in state["history"].items()}
        log.info("resuming %s from step %d", variant_name, start)
    net = DistributedDataParallel(model) if info.world_size > 1 else model
    last = tc.steps if stop_after is None else min(tc.steps, stop_after)
    loader = make_loader(
        data, _StepSampler(start, last, info.rank, info.world_size, len(data), tc, seed), tc.num_workers
    )
    live = None

    def log_step(step_done: int) -> None:
        if live is not None and (step_done % tc.log_every == 0 or step_done == tc.steps):
            live.step = step_done
            for k, v in history.items():
                live.log_metric(k if k == "lr" else f"loss/{k}", v[step_done - 1], timestamp=False)
            live.make_summary()

    if live_dir is not None and info.is_main:
        from dvclive import Live

        # a fresh log with the resumed steps replayed: the curves are those of an uninterrupted run
        live = Live(str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=None, report=None)
        for s_done in range(1, start + 1):
            log_step(s_done)
    t_start = time.perf_counter()
    bar = progress_bar(
        total=last - start, desc=f"pretrain {variant_name}", unit="step", disable=not (progress and info.is_main)
    )

    def loss_of(batch: dict) -> dict:
        batch = {k: v.to(info.device, non_blocking=True) for k, v in batch.items()}
        out = net(batch["voxels"], batch["occupancy_q"], batch.get("ego_q"), batch.get("dino_q"))
        with torch.autocast(device_type=info.device.type, enabled=False):  # the losses in float32
            return pretrain_losses({k: v.float() for k, v in out.items()}, batch, cfg.loss)

    def on_step(step: int, losses: dict, lr: float) -> None:
        values = {k: float(distributed.mean_across(v)) for k, v in losses.items()}
        values["lr"] = lr
        for k, v in values.items():
            history.setdefault(k, []).append(v)
        bar.update()
        bar.set_postfix(loss=f"{values['total']:.3f}")
        log_step(step + 1)
        if info.is_main and ((step + 1) % tc.checkpoint_every == 0 or step + 1 == last):
            _save_checkpoint(
                ckpt_dir / f"step_{step + 1}.pt", model, opt, sched, step + 1, fingerprint, history, info.world_size
            )

    taken = run_steps(
        loader,
        loss_of,
        opt,
        sched,
        model.parameters(),
        grad_clip=tc.grad_clip,
        device=info.device,
        start=start,
        on_step=on_step,
    )
    seen = taken * tc.batch_size * info.world_size
    bar.close()
    seconds = time.perf_counter() - t_start
    done = last >= tc.steps
    metrics = {
        "variant": variant_name,
        "seed": seed,
        "steps": tc.steps,
        "samples_seen": last * tc.batch_size * info.world_size,
    }
    window = max(1, tc.log_every)
    metrics.update({f"final_loss_{k}": round(float(np.mean(v[-window:])), 5) for k, v in history.items() if k != "lr"})
    log.info(
        "%s: %d steps in %.1f s, %.2f samples/s on %s x%d",
        variant_name,
        last - start,
        seconds,
        seen / max(seconds, 1e-9),
        info.device,
        info.world_size,
    )
    if done and info.is_main:
        model.save_pretrained(out_dir)
        final = {k.removeprefix("final_"): v for k, v in metrics.items() if k.startswith("final_loss")}
        card.pretrain_card(
            out_dir, variant_name, var, cfg, seed, store_dir, dino_dir if var.dino else None, logs, final, last, seconds
        )
        if live is not None:
            live.end()
    distributed.teardown()
    return metrics
