"""gasp_core: the library behind every GASP pipeline stage.

Layers (imports point down only; ``tests/test_configs.py::test_layering`` checks every import, lazy ones too):

0. foundation: ``config``, ``io``, ``parallel``, ``perf``, ``progress``, ``cli``, ``params``, ``closure``, ``geometry``,
   ``optim`` (the training step and LR schedule), ``card`` (model cards)
1. ``data`` (the log store and dataset readers), ``teacher`` (image models), ``viz``
2. ``sim`` (writes datasets: uses ``data``), ``targets`` (self-supervised targets), ``models``
3. ``train`` (pre-training), ``tasks`` (downstream tasks)
4. ``apps``: ``query``, ``view``, ``presets``, ``command`` (the ``gasp`` CLI); the stage scripts in ``stages/`` sit
   above all of them

A package imports its own modules, any of a lower layer and, in the foundation, its neighbours. So ``data`` never
imports ``sim``: the simulator writes what ingest needs (the ego's box) into its manifest.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``gasp_core.load_pretrained`` without importing torch on ``import gasp_core``
    if name == "load_pretrained":
        from gasp_core.models.gasp_model import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'gasp_core' has no attribute {name!r}")
