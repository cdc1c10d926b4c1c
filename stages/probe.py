"""DVC stage ``probe``: how semantic each pre-trained model's DINO field is, next to the teacher targets it distils.

For every pre-training variant with a DINO decoder (first seed of ``pretrain.seeds``), a linear probe of the surface
class of lidar points (``dino_targets.probe``) is fitted on the training logs' points and scored on the test logs',
once from the model's predicted field and once from the teacher's targets on the same points. Needs a store with
surface labels (the embedded world's sidecar); on real data without them the stage records that it had nothing to
score. The probe of the colour at the pixel and of the teacher's targets over all points is in ``dino_targets``'s
metrics.
"""

import logging
from pathlib import Path

from gasp_core.cli import read_params, stage_parser, write_metrics

log = logging.getLogger("probe")


def main() -> None:
    parser = stage_parser(__doc__, out=False)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--dino", type=Path, required=True, help="dino_targets outputs (one folder per source)")
    parser.add_argument("--models", type=Path, required=True, help="folder of the pre-trained models (one per variant)")
    args = parser.parse_args()
    # the library (torch and its kin) loads after parsing, so --help answers at once
    from gasp_core.config import from_dict
    from gasp_core.data.samples import SceneConfig
    from gasp_core.data.store import LogStore
    from gasp_core.models import load_pretrained
    from gasp_core.targets.dino import surface_classes
    from gasp_core.tasks.config import SplitsConfig
    from gasp_core.teacher.probe import ProbeConfig
    from gasp_core.train.field_probe import probe_field

    params = read_params(args.params)
    scene = from_dict(SceneConfig, params["scene"], "scene", strict=True)
    splits = from_dict(SplitsConfig, params["splits"], "splits", strict=True)
    probe_cfg = from_dict(ProbeConfig, params["dino_targets"]["probe"], "dino_targets.probe", strict=True)
    seed = list(params["pretrain"]["seeds"])[0]
    metrics: dict = {
        "labelled": surface_classes(LogStore(args.store)) is not None,
        "pretrain_seed": seed,
        "variants": {},
    }
    if not metrics["labelled"]:
        log.warning("%s: no surface labels in the store; the field probe has nothing to score", args.store)
    else:
        for variant in params["pretrain"]["variants"]:
            model = load_pretrained(args.models / variant / f"seed_{seed}")
            if model.dino is None:
                continue
            metrics["variants"][variant] = probe_field(
                model,
                store_dir=args.store,
                dino_dir=args.dino / model.variant.teacher,
                train_logs=splits.train,
                test_logs=splits.test,
                scene=scene,
                cfg=probe_cfg,
            )
            r = metrics["variants"][variant]
            log.info(
                "%s: field probe mIoU %.3f (teacher targets on the same points %.3f)",
                variant,
                r["field"]["mIoU"],
                r["targets"]["mIoU"],
            )
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    main()
