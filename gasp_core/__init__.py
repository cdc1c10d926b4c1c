"""gasp_core: the library behind every GASP pipeline stage.

Rooms (dependencies point one way): geometry <- sim, data <- targets/models <- tasks/train <- stages.
"""

__version__ = "0.1.0"
