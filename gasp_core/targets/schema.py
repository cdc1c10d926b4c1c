"""On-disk layout of the self-supervised targets (outputs of ``occupancy_labels`` and ``dino_targets``).

``occupancy_labels`` writes ``<out>/<log_id>/``::

    samples.parquet   SAMPLES: one row per training sample (t0, its past input sweeps, its future sweeps),
                      with ``batch``: the record batch holding its queries in both files below.
    occupancy.arrow   OCCUPANCY (Arrow IPC file, one record batch per sample): (x, y, z) in the t0 ego
                      frame, t after t0, occupied 0/1, source (QuerySource: return / free / missing ray).
    ego_path.arrow    EGO_PATH (one record batch per sample): (x, y) in the t0 frame, t, inside 0/1,
                      source (EgoSource: positive / near / far).
    meta.json         written last: the log is complete iff it exists.

``dino_targets`` writes ``<out>/pca.safetensors`` (mean, components), ``<out>/teacher.json`` and per
log ``<out>/<log_id>/``::

    frames.parquet    DINO_FRAMES: one row per camera frame (camera, timestamps, sweep used, point count),
                      ``batch`` indexes dino.arrow.
    dino.arrow        DINO_POINTS (one record batch per camera frame): lidar points seen by the camera,
                      (x, y, z) in the ego frame at the sweep's timestamp, their firing time, and the
                      teacher's PCA-reduced feature (float16). When the store has surface labels (the
                      embedded world's sidecar), also each point's ``surface`` class and the ``rgb`` colour
                      at its pixel: what the semantic probe reads (pre-training never does).
    meta.json         written last.

Coordinates stay float32 (float16 would blur the 0.1 m occupied band at 40 m); times after t0 and
features are float16.
"""

from __future__ import annotations

import pyarrow as pa

SAMPLES_FILE = "samples.parquet"
OCCUPANCY_FILE = "occupancy.arrow"
EGO_PATH_FILE = "ego_path.arrow"
DINO_FRAMES_FILE = "frames.parquet"
DINO_POINTS_FILE = "dino.arrow"
PCA_FILE = "pca.safetensors"
TEACHER_FILE = "teacher.json"
META_FILE = "meta.json"
MANIFEST_FILE = "manifest.json"

SAMPLES = pa.schema(
    [
        ("batch", pa.int32()),
        ("t0_ns", pa.int64()),
        ("past_ns", pa.list_(pa.int64())),  # input sweeps, oldest first, ending at t0
        ("future_ns", pa.list_(pa.int64())),  # sweeps in (t0, t0 + horizon]
        ("num_occupancy", pa.int32()),
        ("num_ego", pa.int32()),
    ]
)

OCCUPANCY = pa.schema(
    [
        ("x_m", pa.float32()),
        ("y_m", pa.float32()),
        ("z_m", pa.float32()),
        ("t_s", pa.float16()),
        ("occupied", pa.uint8()),
        ("source", pa.uint8()),
    ]
)

EGO_PATH = pa.schema(
    [
        ("x_m", pa.float32()),
        ("y_m", pa.float32()),
        ("t_s", pa.float16()),
        ("inside", pa.uint8()),
        ("source", pa.uint8()),
    ]
)

DINO_FRAMES = pa.schema(
    [
        ("batch", pa.int32()),
        ("camera", pa.string()),
        ("camera_ns", pa.int64()),
        ("sweep_ns", pa.int64()),
        ("num_points", pa.int32()),
    ]
)


def dino_points_schema(dim: int, labelled: bool = False) -> pa.Schema:
    fields = [
        ("x_m", pa.float32()),
        ("y_m", pa.float32()),
        ("z_m", pa.float32()),  # ego frame at sweep_ns
        ("t_ns", pa.int64()),  # firing time of the point
        ("feature", pa.list_(pa.float16(), dim)),
    ]
    if labelled:
        fields += [
            ("surface", pa.uint8()),  # LogMeta.surface_classes index of what the return hit
            ("rgb", pa.list_(pa.uint8(), 3)),
        ]  # the image's colour at the point's pixel
    return pa.schema(fields)
