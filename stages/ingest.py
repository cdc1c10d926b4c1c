"""DVC stage ``ingest``: raw AV2 / nuScenes logs -> the normalized log store.

Reads the ``ingest`` section of params.yaml (``gasp_core.data.ingest.IngestConfig``), writes one
folder per log under ``--out`` (schema: ``gasp_core/data/schema.py``) and the stage metrics to
``--metrics``.
"""

from gasp_core.cli import read_params, stage_parser, write_metrics
from gasp_core.data.ingest import ingest, ingest_config_from_dict


def main() -> None:
    args = stage_parser(__doc__).parse_args()
    cfg = ingest_config_from_dict(read_params(args.params)["ingest"], strict=True)
    write_metrics(args.metrics, ingest(cfg, args.out))


if __name__ == "__main__":
    main()
