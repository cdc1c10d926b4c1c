"""Ego trajectory: future waypoints with and without odometry, against constant velocity.

``labels`` (waypoints, odometry and boxes the task labels stage stores), ``task`` (heads, loss), ``metrics`` (L2 and
collisions), ``figure`` (the report's). Nothing is imported here: the task labels stage reads ``labels`` without the
heads behind ``task``."""
