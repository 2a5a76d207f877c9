"""Optimal one-to-one assignment (the linear assignment problem) for small cost matrices.

Trackers match a handful of tracks to a handful of detections per frame. This is the classic
Hungarian method with row/column potentials and shortest augmenting paths, O(n^2 m) for an
``n x m`` matrix (``n <= m``), vectorised over columns with numpy. It gives the same optimum as
``scipy.optimize.linear_sum_assignment`` without importing scipy (about 0.4 s at start-up).
"""
from __future__ import annotations

import numpy as np

__all__ = ["linear_assignment"]


def linear_assignment(cost, maximize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a minimum-cost (or maximum with ``maximize``) matching.

    Every row is matched when there are no more rows than columns, else every column.

    Args:
        cost: finite float [n, m].
        maximize: maximise the summed cost instead.

    Returns:
        ``(rows, cols)``: int64 arrays, rows ascending; ``cost[rows, cols]`` are the matched pairs.

    >>> linear_assignment([[4, 1, 3], [2, 0, 5], [3, 2, 2]])
    (array([0, 1, 2]), array([1, 0, 2]))
    >>> linear_assignment([[0.9, 0.1], [0.8, 0.7], [0.0, 0.2]], maximize=True)
    (array([0, 1]), array([0, 1]))
    """
    matrix = np.array(cost, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("cost must be finite")
    if maximize:
        matrix = -matrix
    transposed = matrix.shape[0] > matrix.shape[1]
    if transposed:
        matrix = matrix.T
    n, m = matrix.shape
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()

    # 1-based columns with a virtual column 0; owner[j] = 1-based row matched to column j (0: none).
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)
    for row in range(1, n + 1):
        owner[0] = row
        column = 0
        min_slack = np.full(m + 1, np.inf)
        previous = np.zeros(m + 1, dtype=np.int64)  # augmenting path: column reached from
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[column] = True
            current = owner[column]
            slack = matrix[current - 1] - u[current] - v[1:]
            better = ~used[1:] & (slack < min_slack[1:])
            min_slack[1:][better] = slack[better]
            previous[1:][better] = column
            candidates = np.where(used[1:], np.inf, min_slack[1:])
            nearest = int(np.argmin(candidates)) + 1
            delta = candidates[nearest - 1]
            u[owner[used]] += delta
            v[used] -= delta
            min_slack[~used] -= delta
            column = nearest
            if owner[column] == 0:
                break
        while column != 0:  # flip the path
            back = previous[column]
            owner[column] = owner[back]
            column = back

    cols = np.nonzero(owner[1:])[0]
    rows = owner[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.int64), cols[order].astype(np.int64)
