"""The Hungarian solver finds the optimum (checked by brute force) and handles every shape."""
import itertools

import numpy as np
import pytest

from dp2.ops.assignment import linear_assignment


def brute_force_best(cost: np.ndarray, maximize: bool) -> float:
    n, m = cost.shape
    if min(n, m) == 0:
        return 0.0
    if n > m:
        cost = cost.T
        n, m = m, n
    totals = [cost[np.arange(n), list(cols)].sum() for cols in itertools.permutations(range(m), n)]
    return max(totals) if maximize else min(totals)


@pytest.mark.parametrize("maximize", [False, True])
def test_matches_brute_force_on_random_matrices(maximize):
    rng = np.random.default_rng(0)
    for trial in range(400):
        n, m = rng.integers(0, 6, size=2)
        # Ties (small integers) and generic floats both.
        cost = rng.integers(0, 3, (n, m)).astype(float) if trial % 2 else rng.normal(size=(n, m))
        rows, cols = linear_assignment(cost, maximize=maximize)
        assert len(rows) == len(cols) == min(n, m)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert (np.diff(rows) > 0).all(), "rows ascending"
        assert cost[rows, cols].sum() == pytest.approx(brute_force_best(cost, maximize), abs=1e-9)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        linear_assignment(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        linear_assignment([[0.0, np.inf]])
