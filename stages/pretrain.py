"""DVC stage ``pretrain@<variant>-<seed>``: pre-train the BEV encoder and implicit decoders (uno | gasp | ablations).

Reads the ``scene``, ``splits`` (pre-training reads the pre-training pool, ``splits.train`` + ``splits.pool``, never a
validation or test log) and ``pretrain`` sections of params.yaml, the log store and both target stages' outputs
(``--dino`` holds one folder per ``dino_targets.sources`` entry; the variant's ``teacher`` picks one); writes ``--out``
(model.safetensors + config.json, loadable with ``gasp_core.models.load_pretrained``), dvclive metrics and plots under
``--live`` and the final metrics to ``--metrics``. Multi-GPU / multi-node: launch the same command with ``torchrun
--nproc_per_node=N stages/pretrain.py ...``. ``--seed`` (one of ``pretrain.seeds``) seeds the initialisation and every
data draw. Resumable checkpoints go to ``--checkpoints`` (scratch space outside DVC; a run resumes only from a
checkpoint of identical settings)."""

import os
from pathlib import Path

# idle OpenMP threads of the training step sleep instead of spinning, so the data-loading worker gets the core
# between the step's parallel regions (benchmarks/pretrain_throughput.py); set before torch is imported
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gasp_core.cli import read_params, stage_parser, write_metrics


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--seed", type=int, required=True, help="one of pretrain.seeds")
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--occupancy", type=Path, required=True, help="occupancy_labels output")
    parser.add_argument("--dino", type=Path, required=True, help="dino_targets outputs (one folder per source)")
    parser.add_argument("--live", type=Path, required=True, help="dvclive folder (metrics and plots)")
    parser.add_argument(
        "--checkpoints", type=Path, default=None, help="default: outputs/checkpoints/pretrain_<variant>"
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop after this step with a checkpoint, as an interruption would (a later run resumes from it)",
    )
    args = parser.parse_args()
    # the library (torch and its kin) loads after parsing, so --help answers at once
    from gasp_core.config import from_dict
    from gasp_core.data.samples import SceneConfig
    from gasp_core.models.config import variant
    from gasp_core.tasks.config import SplitsConfig
    from gasp_core.train.pretrain import pretrain, pretrain_config_from_dict

    params = read_params(args.params)
    scene = from_dict(SceneConfig, params["scene"], "scene", strict=True)
    cfg = pretrain_config_from_dict(params["pretrain"], strict=True)
    if args.seed not in cfg.seeds:
        raise SystemExit(f"--seed {args.seed} is not one of pretrain.seeds = {cfg.seeds} in {args.params}")
    ckpt = args.checkpoints or Path("outputs/checkpoints") / f"pretrain_{args.variant}_seed_{args.seed}"
    splits = from_dict(SplitsConfig, params["splits"], "splits", strict=True)
    var = variant(args.variant)
    dino = args.dino / var.teacher
    if var.dino and not dino.is_dir():
        raise SystemExit(
            f"{dino} is missing: variant {args.variant!r} distils the {var.teacher!r} targets; add {var.teacher!r} to "
            f"dino_targets.sources in {args.params}"
        )
    metrics = pretrain(
        args.variant,
        store_dir=args.store,
        occupancy_dir=args.occupancy,
        dino_dir=dino,
        out_dir=args.out,
        scene=scene,
        cfg=cfg,
        ckpt_dir=ckpt,
        live_dir=args.live,
        logs=splits.pretrain_logs(),
        seed=args.seed,
        stop_after=args.stop_after,
    )
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    main()
