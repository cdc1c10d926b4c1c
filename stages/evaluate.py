"""DVC stage ``evaluate@<task>``: score every fine-tuned run of a task (each init, pre-training seed, budget and
fine-tuning seed) and the task's non-learned baseline on the test logs, which nothing before this stage has read.
For 4D occupancy, each pre-trained model with an occupancy decoder is also scored zero-shot on its own decoder (UnO's
protocol, no labels), per pre-training seed, as budget ``zero_shot`` (``--models``: the pre-trained models).

Reads ``scene``, ``splits``, ``pretrain.seeds`` and ``finetune``; writes the metrics (per run, and mean / std over
runs) to ``--metrics``; to ``--out``, predictions of the first test sample per init (``qualitative.npz``, the
report's figures), per-sample statistics of every run (``stats.npz``, the report's bootstrap intervals) and, for
the AP tasks, each init's precision-recall curve at the full budget (``pr_<init>.csv``, dvc.yaml's ``plots:``).
"""

from pathlib import Path

from gasp_core.cli import read_params, stage_parser, write_metrics


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--task", required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--occupancy", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True, help="folder of the pre-trained models (one per init)")
    parser.add_argument("--runs", type=Path, required=True, help="finetune outputs of this task (one folder per init)")
    args = parser.parse_args()
    # the library (torch and its kin) loads after parsing, so --help answers at once
    from gasp_core.config import from_dict
    from gasp_core.data.samples import SceneConfig
    from gasp_core.tasks.config import SplitsConfig, finetune_config_from_dict
    from gasp_core.tasks.evaluation import evaluate_runs, pr_curves, save_arrays, save_pr_curves, save_qualitative
    from gasp_core.tasks.registry import TASK_CLASSES

    params = read_params(args.params)
    scene = from_dict(SceneConfig, params["scene"], "scene", strict=True)
    splits = from_dict(SplitsConfig, params["splits"], "splits", strict=True)
    cfg = finetune_config_from_dict(params["finetune"], strict=True)
    inits = {name: args.models / name for name in cfg.inits}
    metrics, qualitative, stats = evaluate_runs(
        args.task,
        inits=inits,
        runs_root=args.runs,
        labels_dir=args.labels,
        occupancy_dir=args.occupancy,
        scene=scene,
        splits=splits,
        cfg=cfg,
        pretrain_seeds=list(params["pretrain"]["seeds"]),
    )
    save_qualitative(args.out / "qualitative.npz", qualitative)
    save_arrays(args.out / "stats.npz", stats)
    budget = "full" if "full" in cfg.budgets else list(cfg.budgets)[-1]
    save_pr_curves(args.out, pr_curves(TASK_CLASSES[args.task], stats, budget))
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    main()
