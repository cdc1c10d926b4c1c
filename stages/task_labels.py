"""DVC stage ``task_labels``: the downstream labels of every sample of every split's logs, from the log store.

Reads the ``scene``, ``splits``, ``pretrain.model.voxelizer`` (the model input is stored with the labels),
``occupancy_labels`` (its samples and ray settings) and ``task_labels`` sections of params.yaml (and ``compute``, how
to run the per-log jobs: not a param of the stage); writes one
npz per log and a manifest to ``--out`` (``gasp_core.tasks.build``).
"""

from pathlib import Path

from gasp_core.cli import compute_config, read_params, stage_parser, write_metrics


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument(
        "--occupancy", type=Path, required=True, help="occupancy_labels output (samples and ray queries)"
    )
    args = parser.parse_args()
    # the library (torch and its kin) loads after parsing, so --help answers at once
    from gasp_core.config import from_dict
    from gasp_core.data.samples import SceneConfig
    from gasp_core.models.config import VoxelizerConfig
    from gasp_core.targets.build import occupancy_labels_config_from_dict
    from gasp_core.tasks.build import build_task_labels
    from gasp_core.tasks.config import SplitsConfig, TaskLabelsConfig

    params = read_params(args.params)
    scene = from_dict(SceneConfig, params["scene"], "scene", strict=True)
    splits = from_dict(SplitsConfig, params["splits"], "splits", strict=True)
    vox = from_dict(VoxelizerConfig, params["pretrain"]["model"]["voxelizer"], "pretrain.model.voxelizer", strict=True)
    occ = occupancy_labels_config_from_dict(params["occupancy_labels"], strict=True)
    cfg = from_dict(TaskLabelsConfig, params["task_labels"], "task_labels", strict=True)
    metrics = build_task_labels(
        args.store,
        args.occupancy,
        out=args.out,
        scene=scene,
        vox=vox,
        occ_cfg=occ,
        cfg=cfg,
        logs=splits.all(),
        ray_logs=[*splits.val, *splits.test],
        compute=compute_config(params),
    )
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    main()
