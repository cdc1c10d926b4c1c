"""DVC stage ``teacher``: an in-domain self-supervised ViT (MAE or DINO/iBOT) trained on the camera frames of the
pre-training pool's logs, as the image teacher of ``dino_targets``.

Reads the ``teacher`` section (``gasp_core.teacher.ssl_config.TeacherTrainConfig``) and ``splits.train`` /
``splits.pool`` of params.yaml (only frames of the pre-training pool are seen, never a validation or test image) and the
log store at ``--store``; writes ``model.safetensors`` (the timm ViT backbone) and ``teacher.json`` under ``--out`` and
the stage metrics to ``--metrics``. With ``teacher.enabled`` false it writes only ``teacher.json`` = {"trained": false},
without touching the store or importing torch."""

from pathlib import Path

from gasp_core.cli import pretrain_pool, read_params, stage_parser, write_metrics
from gasp_core.teacher.ssl_config import teacher_train_config_from_dict, write_untrained


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--store", type=Path, required=True, help="the log store (ingest's output)")
    args = parser.parse_args()
    params = read_params(args.params)
    cfg = teacher_train_config_from_dict(params["teacher"], strict=True)
    if not cfg.enabled:
        write_metrics(args.metrics, write_untrained(args.out))
        return
    from gasp_core.data.store import LogStore
    from gasp_core.targets.dino import fit_log_frames, list_frames
    from gasp_core.teacher.ssl import train_teacher

    store = LogStore(args.store)
    frames = fit_log_frames(list_frames(store, cfg.frame_stride), pretrain_pool(params["splits"]), store)
    metrics = train_teacher([f.image_path for f in frames], cfg, out_dir=args.out)
    write_metrics(args.metrics, {**metrics, "logs": len({f.log_id for f in frames})})


if __name__ == "__main__":
    main()
