"""The task registry is the one list of tasks: the config's names, the labels the task labels stage builds, the
report's tables and dvc.yaml's precision-recall plots all agree with it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from gasp_core.tasks import build, config, registry
from gasp_core.tasks.base import Task
from gasp_core.tasks.dvc_plots import params_inits, plots_section, rewrite_plots

ROOT = Path(__file__).resolve().parents[2]


def test_config_names_the_registered_tasks_in_their_order():
    assert config.TASKS == registry.task_names()


def test_every_registered_task_is_complete():
    for name, cls in registry.TASK_CLASSES.items():
        assert cls.name == name and not inspect.isabstract(cls), name
        assert cls.title and cls.main_metric[1] in ("higher", "lower"), name
        assert cls.label_builders and all(b in build.LABEL_BUILDERS for b in cls.label_builders), name
        assert (cls.pr_curve is None) == (not cls.histogram_stats), name
    assert set(registry.figures()) == {n for n, c in registry.TASK_CLASSES.items() if c.figure is not None}


def test_the_labels_stage_builds_the_input_and_exactly_the_registered_tasks_labels():
    wanted = {b for builders in registry.label_builders().values() for b in builders}
    assert build.LABEL_BUILDERS[0] is build.InputLabels
    assert set(build.LABEL_BUILDERS[1:]) == wanted and len(build.LABEL_BUILDERS) == 1 + len(wanted)
    keys = [k for b in build.LABEL_BUILDERS for k in (*b.keys, *b.log_keys)]
    assert len(keys) == len(set(keys)), "two builders store the same array"


def test_dvc_yaml_plots_are_the_registrys():
    """``python -m gasp_core.tasks.dvc_plots --write dvc.yaml`` fixes this."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    expected = registry.pr_plots(params_inits(ROOT / "params.yaml"))
    assert dvc["plots"] == expected, "dvc.yaml plots differ: run `python -m gasp_core.tasks.dvc_plots --write dvc.yaml`"
    assert yaml.safe_load(plots_section(params_inits(ROOT / "params.yaml")))["plots"] == expected


def test_rewrite_plots_replaces_only_the_plots_section(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"finetune": {"inits": ["a", "b"]}}))
    dvc = tmp_path / "dvc.yaml"
    dvc.write_text(
        "stages:\n  x:\n    cmd: true\n\n# the curves\nplots:\n  - old:\n      x: 1\n\n# after\nartifacts: {}\n"
    )
    assert rewrite_plots(dvc, params) and not rewrite_plots(dvc, params)
    text = dvc.read_text()
    assert text.startswith("stages:\n  x:\n    cmd: true\n\n# the curves\nplots:\n") and "old" not in text
    assert text.endswith("\n\n# after\nartifacts: {}\n")
    data = yaml.safe_load(text)
    assert data["plots"] == registry.pr_plots(["a", "b"]) and data["artifacts"] == {}


def test_registering_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.TASK_CLASSES["map"])
    assert issubclass(registry.TASK_CLASSES["map"], Task)
