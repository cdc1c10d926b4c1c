"""BEV semantic forecasting: object cover of each BEV cell at future times (UnO's protocol).

``labels`` (the rasters the task labels stage stores), ``task`` (head, loss and metrics), ``figure`` (the report's).
Nothing is imported here: the task labels stage reads ``labels`` without the heads behind ``task``."""
