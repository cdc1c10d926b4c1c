"""DVC stage ``dino_targets``: DINOv2 (timm) features of every camera frame, PCA-reduced and lifted onto lidar points.

Reads the ``dino_targets`` section and ``splits.train`` of params.yaml (the PCA is fitted on frames of the
training logs only; every log is transformed) and the log store at ``--store``; writes the PCA, the teacher's
identity and per-log point targets under ``--out`` (schema: ``gasp_core/targets/schema.py``) and the stage
metrics to ``--metrics``. Offline unless ``teacher.weights`` is ``hub``.
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
    write_metrics(args.metrics, build_dino_targets(args.store, args.out, cfg, params["splits"]["train"]))


if __name__ == "__main__":
    main()
