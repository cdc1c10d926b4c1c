"""4D occupancy: the occupancy of points in space and future time, from the pre-training ray queries.

``labels`` (the future rays the task labels stage stores for depth rendering), ``task`` (head, loss, metrics, the
zero-shot protocol), ``render`` (depth through a field), ``baseline`` (persistence), ``figure`` (the report's).
Nothing is imported here: the task labels stage reads ``labels`` without the heads behind ``task``."""
