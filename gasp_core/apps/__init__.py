"""The applications on top of the library: the ``gasp`` command (``command.py``) and the subcommands that live here,
``gasp preset`` (``presets.py``: a runnable project for a preset), ``gasp query`` (``query.py``: a pre-trained model's
4D queries and BEV slices) and ``gasp view`` (``view.py``: a log and a model's predictions for rerun's viewer). No
other gasp_core package imports them, and no stage script does."""
