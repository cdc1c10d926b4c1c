"""4D semantic occupancy: the object class at occupied points in space and future time.

``labels`` (the classed 4D queries the task labels stage stores), ``task`` (head, loss and metrics), ``figure`` (the
report's). Nothing is imported here: the task labels stage reads ``labels`` without the heads behind ``task``."""
