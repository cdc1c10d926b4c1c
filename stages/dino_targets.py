"""DVC stage ``dino_targets``: DINOv2 (timm) features of every camera frame, PCA-reduced and lifted onto lidar points.

Reads the ``dino_targets`` section and ``splits.train`` / ``splits.test`` of params.yaml (the PCA is fitted on frames
of the training logs only; every log is transformed; when the store has surface labels, a linear probe fitted on the
training logs' points and scored on the test logs' measures how semantic the targets are) and the log store at
``--store``; writes the PCA, the teacher's identity and per-log point targets under ``--out`` (schema:
``gasp_core/targets/schema.py``) and the stage metrics to ``--metrics``. Offline unless ``teacher.weights`` is
``hub``.
"""

from pathlib import Path

from gasp_core.cli import read_params, stage_parser, write_metrics
from gasp_core.targets.dino import build_dino_targets, dino_targets_config_from_dict


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--store", type=Path, required=True, help="the log store (ingest's output)")
    args = parser.parse_args()
    params = read_params(args.params)
    cfg = dino_targets_config_from_dict(params["dino_targets"], strict=True)
    test_logs = params["splits"].get("test")
    write_metrics(
        args.metrics,
        build_dino_targets(
            args.store,
            args.out,
            cfg,
            params["splits"]["train"],
            test_logs=test_logs if isinstance(test_logs, list) else None,
        ),
    )


if __name__ == "__main__":
    main()
