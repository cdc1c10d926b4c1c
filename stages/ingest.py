"""DVC stage ``ingest``: raw AV2 / nuScenes logs -> the normalized log store.

Reads the ``ingest`` section of params.yaml (``gasp_core.data.ingest.IngestConfig``) and how to run the per-log jobs
(``compute``: not a param of the stage, see ``gasp_core/parallel.py``), writes one
folder per log under ``--out`` (schema: ``gasp_core/data/schema.py``) and the stage metrics to
``--metrics``.
"""

from gasp_core.cli import compute_config, read_params, stage_parser, write_metrics


def main() -> None:
    args = stage_parser(__doc__).parse_args()
    # the library (torch and its kin) loads after parsing, so --help answers at once
    from gasp_core.data.ingest import ingest, ingest_config_from_dict

    params = read_params(args.params)
    cfg = ingest_config_from_dict(params["ingest"], strict=True)
    write_metrics(args.metrics, ingest(cfg, args.out, compute=compute_config(params)))


if __name__ == "__main__":
    main()
