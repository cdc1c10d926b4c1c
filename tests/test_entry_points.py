"""The library entry points the stage scripts call take their first argument or two by position and every other one
by name, so a call that swaps two paths (or two configs) raises instead of writing to the wrong place."""

import inspect

import pytest

from gasp_core.data.ingest import ingest
from gasp_core.targets.build import build_occupancy_labels
from gasp_core.targets.dino import build_dino_targets
from gasp_core.teacher.ssl import train_teacher
from gasp_core.train.field_probe import probe_field
from gasp_core.train.pretrain import pretrain

# entry point -> how many leading parameters may be passed by position
ENTRY_POINTS = {
    pretrain: 1,
    ingest: 2,
    build_occupancy_labels: 1,
    build_dino_targets: 1,
    probe_field: 1,
    train_teacher: 2,
}
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@pytest.mark.parametrize("fn", ENTRY_POINTS, ids=lambda fn: fn.__name__)
def test_entry_point_takes_all_but_its_first_arguments_by_name(fn):
    params = list(inspect.signature(fn).parameters.values())
    positional = [p.name for p in params if p.kind in POSITIONAL]
    assert len(positional) == ENTRY_POINTS[fn], f"{fn.__name__}: positional {positional}"
    # of the parameters that can be passed by position, at most one is a path: two paths by position can be swapped
    paths = [p.name for p in params if p.kind in POSITIONAL and "Path" in str(p.annotation)]
    assert len(paths) <= 1, f"{fn.__name__}: paths by position {paths}"


def test_swapped_paths_raise_before_any_work(tmp_path):
    """Two paths given by position, every other argument by name: refused before the function body runs."""
    store, out, occupancy = tmp_path / "store", tmp_path / "out", tmp_path / "occupancy"
    with pytest.raises(TypeError, match="positional"):
        build_occupancy_labels(out, store, scene=None, cfg=None)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        build_dino_targets(out, store, cfg=None, fit_logs=[])  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        pretrain("gasp", occupancy, store, dino_dir=None, out_dir=out, scene=None, cfg=None, ckpt_dir=out)  # type: ignore[misc]
    assert not any(tmp_path.iterdir())
