"""DVC stage ``occupancy_labels``: occupancy queries (returned and missing rays) and ego-path queries per sample.

Reads the ``scene`` and ``occupancy_labels`` sections of params.yaml (and ``compute``, how to run the per-log jobs:
not a param of the stage) and the log store at ``--store``;
writes per-log shards under ``--out`` (schema: ``gasp_core/targets/schema.py``) and the stage metrics
to ``--metrics``.
"""

from pathlib import Path

from gasp_core.cli import compute_config, read_params, stage_parser, write_metrics


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--store", type=Path, required=True, help="the log store (ingest's output)")
    args = parser.parse_args()
    # the library (torch and its kin) loads after parsing, so --help answers at once
    from gasp_core.config import from_dict
    from gasp_core.data.samples import SceneConfig
    from gasp_core.targets.build import build_occupancy_labels, occupancy_labels_config_from_dict

    params = read_params(args.params)
    scene = from_dict(SceneConfig, params["scene"], "scene", strict=True)
    cfg = occupancy_labels_config_from_dict(params["occupancy_labels"], strict=True)
    write_metrics(
        args.metrics,
        build_occupancy_labels(args.store, out=args.out, scene=scene, cfg=cfg, compute=compute_config(params)),
    )


if __name__ == "__main__":
    main()
