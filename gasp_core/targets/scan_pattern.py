"""A spinning lidar's scan pattern (laser x azimuth), inferred from one sweep, and its empty cells.

Each laser fires at a fixed elevation while the head turns, so the directions it could have measured
form a grid of (laser, azimuth bin). Cells with no return are rays that came back empty: GASP's
missing-ray supervision labels free space along them. Works from laser index and direction alone, so
it applies to real AV2 sweeps (two 32-laser lidars) as to the embedded world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TWO_PI = 2.0 * np.pi


@dataclass
class ScanPattern:
    lasers: np.ndarray  # (L,) laser numbers with enough returns to know their elevation
    elevation_rad: np.ndarray  # (L,) median elevation of each laser
    azimuth_bins: int  # bins per revolution


def infer_pattern(
    azimuth: np.ndarray,
    elevation: np.ndarray,
    laser: np.ndarray,
    azimuth_bins: int | None = None,
    min_returns: int = 50,
) -> ScanPattern:
    """Elevation per laser (median) and the azimuth resolution (median step between a laser's returns)."""
    lasers, inverse, counts = np.unique(laser, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    splits = np.cumsum(counts)[:-1]
    elevations = np.array([np.median(e) for e in np.split(elevation[order], splits)])
    keep = counts >= min_returns
    if azimuth_bins is None:
        steps = []
        for k, az in enumerate(np.split(azimuth[order], splits)):
            if keep[k]:
                d = np.diff(np.sort(az))
                d = d[d > 1e-6]
                if len(d):
                    steps.append(np.median(d))
        if not steps:
            raise ValueError("cannot infer the azimuth resolution: no laser has enough returns")
        azimuth_bins = int(round(TWO_PI / float(np.median(steps))))
    return ScanPattern(lasers[keep], elevations[keep], int(azimuth_bins))


def azimuth_bin(azimuth: np.ndarray, bins: int) -> np.ndarray:
    return np.floor((np.mod(azimuth + np.pi, TWO_PI)) / TWO_PI * bins).astype(np.int64) % bins


def empty_cells(
    azimuth: np.ndarray, laser: np.ndarray, pattern: ScanPattern, dilate: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(laser index into ``pattern.lasers``, azimuth bin centre) of cells with no return.

    A cell counts as empty only when its ``dilate`` neighbours in azimuth are empty too, so jitter of
    the firing azimuth across a bin edge never fakes a missing ray.
    """
    n_az = pattern.azimuth_bins
    row = np.searchsorted(pattern.lasers, laser)
    known = (row < len(pattern.lasers)) & (pattern.lasers[np.minimum(row, len(pattern.lasers) - 1)] == laser)
    hit = np.zeros((len(pattern.lasers), n_az), dtype=bool)
    hit[row[known], azimuth_bin(azimuth[known], n_az)] = True
    covered = hit.copy()
    for s in range(1, dilate + 1):
        covered |= np.roll(hit, s, axis=1) | np.roll(hit, -s, axis=1)
    rows, bins = np.nonzero(~covered)
    centres = (bins + 0.5) / n_az * TWO_PI - np.pi
    return rows, centres
