"""Downstream tasks: labels from the log store, heads on the pre-trained BEV encoder, metrics."""
