"""DVC stage ``report``: the comparison table, radar chart and qualitative figures of the downstream runs.

Reads the ``evaluate`` stages' metrics (``--metrics-dir``) and predictions (``--eval``), the task labels, the store
(``--store``: the pre-training pool's hours of driving, for the header) and the GASP model (its DINO field for the
BEV PCA figure); the ``splits.test``, ``pretrain.seeds``, ``finetune`` and ``report`` params (``report.bootstrap``:
the intervals' replicates, resampling unit, level and seed). Writes ``--out`` (README.md, summary.json,
main_metrics.csv, PNGs), committed to git so the results are readable without a rebuild.
"""

from pathlib import Path

from gasp_core.cli import read_params, stage_parser, write_metrics


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--metrics-dir", type=Path, required=True, help="evaluate stages' metrics (<task>.json)")
    parser.add_argument("--eval", type=Path, required=True, help="evaluate stages' outputs (<task>/qualitative.npz)")
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--store", type=Path, default=None, help="the store (the pre-training pool's driving time)")
    parser.add_argument("--plot", type=Path, default=None, help="main metrics as CSV for dvc plots")
    parser.add_argument(
        "--gasp", type=Path, default=None, help="pre-trained GASP variant folder (DINO figure of its first seed)"
    )
    args = parser.parse_args()
    # the library (torch and its kin) loads after parsing, so --help answers at once
    from gasp_core.config import from_dict
    from gasp_core.tasks.config import SplitsConfig, finetune_config_from_dict
    from gasp_core.tasks.report import build_report
    from gasp_core.tasks.stats import BootstrapConfig

    params = read_params(args.params)
    splits = from_dict(SplitsConfig, params["splits"], "splits", strict=True)
    cfg = finetune_config_from_dict(params["finetune"], strict=True)
    bootstrap = from_dict(BootstrapConfig, params["report"]["bootstrap"], "report.bootstrap", strict=True)
    write_metrics(
        args.metrics,
        build_report(
            args.metrics_dir,
            args.eval,
            labels_dir=args.labels,
            out=args.out,
            splits=splits,
            cfg=cfg,
            plot=args.plot,
            gasp_model=args.gasp,
            pretrain_seeds=list(params["pretrain"]["seeds"]),
            bootstrap=bootstrap,
            store=args.store,
        ),
    )


if __name__ == "__main__":
    main()
