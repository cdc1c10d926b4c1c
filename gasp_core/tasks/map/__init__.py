"""Map segmentation: drivable area, crossings, lane dividers and road boundaries in BEV.

``labels`` (the rasters the task labels stage stores), ``task`` (head, loss and metrics), ``figure`` (the report's).
Nothing is imported here: the task labels stage reads ``labels`` without the heads behind ``task``."""
