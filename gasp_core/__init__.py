"""gasp_core: the library behind every GASP pipeline stage.

Rooms (dependencies point one way): geometry <- sim, data <- targets/models <- tasks/train <- stages.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``gasp_core.load_pretrained`` without importing torch on ``import gasp_core``
    if name == "load_pretrained":
        from gasp_core.models.gasp_model import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'gasp_core' has no attribute {name!r}")
