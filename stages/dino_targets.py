"""DVC stage ``dino_targets``: DINOv2 (timm) features of every camera frame, PCA-reduced and lifted onto lidar points.

Reads the ``dino_targets`` section and ``splits.train`` / ``splits.pool`` / ``splits.test`` of params.yaml (the PCA is
fitted on frames of the pre-training pool, training and pool logs, only; every log is transformed; when the store has
surface labels, a linear probe fitted on the pool's points and scored on the test logs' measures how semantic the
targets are) and the log store at ``--store``; writes the PCA, the teacher's identity and per-log point targets under
``--out`` (schema: ``gasp_core/targets/schema.py``) and the stage metrics to ``--metrics``. Offline unless
``teacher.weights`` is ``hub``.

``--source oracle`` replaces the teacher by the simulator's surface class of each point (one fixed embedding per
class, no network: ``gasp_core/targets/dino_oracle.py``), through the same PCA, points and probe. It is a control
that real data cannot have (it needs the store's per-return surface labels), never a teacher for a real run.

Each log is one job on params.yaml's ``compute`` backend (a Ray task with ``compute.num_gpus`` for the teacher);
the outputs do not depend on it.
"""

from pathlib import Path

from gasp_core.cli import compute_config, pretrain_pool, read_params, stage_parser, write_metrics


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--store", type=Path, required=True, help="the log store (ingest's output)")
    parser.add_argument(
        "--source",
        choices=("teacher", "oracle"),
        default="teacher",
        help="the features lifted: the ViT teacher's, or the oracle's (the simulated surface class; a control)",
    )
    args = parser.parse_args()
    # the library (torch and its kin) loads after parsing, so --help answers at once
    from gasp_core.targets.dino import build_dino_targets, dino_targets_config_from_dict

    params = read_params(args.params)
    cfg = dino_targets_config_from_dict(params["dino_targets"], strict=True)
    test_logs = params["splits"].get("test")
    write_metrics(
        args.metrics,
        build_dino_targets(
            args.store,
            out=args.out,
            cfg=cfg,
            fit_logs=pretrain_pool(params["splits"]),
            test_logs=test_logs if isinstance(test_logs, list) else None,
            source=args.source,
            compute=compute_config(params),
        ),
    )


if __name__ == "__main__":
    main()
