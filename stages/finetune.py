"""DVC stage ``finetune@<task>-<init>``: fine-tune one task's head on one encoder initialisation, for every label budget
and seed of the ``finetune`` params section.

Reads ``scene``, ``splits``, ``pretrain.seeds`` and ``finetune``; the task labels, the occupancy queries (4D
occupancy) and the initialisation's model folders (``models/pretrain/<init>/seed_<p>``, one per pre-training seed).
Writes heads (and fine-tuned encoders with ``finetune.encoder: full``) to ``--out`` and the training losses and
validation metrics to ``--metrics``; with ``--live``, the fine-tuning curves (training loss per step, validation loss
and metrics at each validation) as dvclive plots.
"""

from pathlib import Path

from gasp_core.cli import read_params, stage_parser, write_metrics


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--task", required=True)
    parser.add_argument("--init", required=True)
    parser.add_argument("--labels", type=Path, required=True, help="task_labels output")
    parser.add_argument("--occupancy", type=Path, required=True, help="occupancy_labels output")
    parser.add_argument("--models", type=Path, required=True, help="folder of the pre-trained models (one per init)")
    parser.add_argument("--live", type=Path, default=None, help="dvclive folder of the fine-tuning curves")
    args = parser.parse_args()
    # the library (torch and its kin) loads after parsing, so --help answers at once
    from gasp_core.config import from_dict
    from gasp_core.data.samples import SceneConfig
    from gasp_core.tasks.config import SplitsConfig, finetune_config_from_dict
    from gasp_core.tasks.finetune import finetune

    params = read_params(args.params)
    scene = from_dict(SceneConfig, params["scene"], "scene", strict=True)
    splits = from_dict(SplitsConfig, params["splits"], "splits", strict=True)
    cfg = finetune_config_from_dict(params["finetune"], strict=True)
    seeds = list(params["pretrain"]["seeds"])
    write_metrics(
        args.metrics,
        finetune(
            args.task,
            args.init,
            labels_dir=args.labels,
            occupancy_dir=args.occupancy,
            init_dir=args.models / args.init,
            out_dir=args.out,
            scene=scene,
            splits=splits,
            cfg=cfg,
            pretrain_seeds=seeds,
            live_dir=args.live,
        ),
    )


if __name__ == "__main__":
    main()
