"""The demo's machine-independent elementary functions: exact values by hand, numpy's to 1e-15."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from lesionaug.demo import portable_math as pm


def test_values_known_by_hand():
    assert pm.exp(0.0) == 1.0 and pm.exp(1.0) == pytest.approx(math.e, rel=1e-15)
    assert pm.sin(math.pi / 6) == pytest.approx(0.5, abs=1e-16) and pm.cos(math.pi / 3) == pytest.approx(0.5, abs=1e-15)
    assert pm.sin(-math.pi / 2) == pytest.approx(-1.0) and pm.cos(math.pi) == pytest.approx(-1.0)
    assert pm.arctan2(1.0, 1.0) == pytest.approx(math.pi / 4, abs=1e-16)
    assert pm.arctan2(0.0, -1.0) == pytest.approx(math.pi) and pm.arctan2(-1.0, 0.0) == pytest.approx(-math.pi / 2)
    assert pm.arctan2(0.0, 0.0) == 0.0
    assert pm.log(math.e) == pytest.approx(1.0, abs=1e-16) and pm.log(8.0) == pytest.approx(3 * math.log(2), abs=1e-15)
    assert pm.power(4.0, 0.5) == pytest.approx(2.0, abs=1e-15) and pm.power(0.0, 0.7) == 0.0
    assert pm.hypot(3.0, 4.0) == 5.0
    # [[1, 2], [3, 4]] @ [[5], [6]] = [[1*5 + 2*6], [3*5 + 4*6]] = [[17], [39]]
    assert pm.fixed_order_matmul(np.array([[1, 2], [3, 4]]), np.array([[5], [6]])).tolist() == [[17.0], [39.0]]


def test_agrees_with_numpy_to_a_few_ulp():
    rng = np.random.default_rng(0)
    x = rng.uniform(-30, 30, 20000)
    assert np.max(np.abs(pm.exp(x) / np.exp(x) - 1)) < 1e-15
    assert np.max(np.abs(pm.sin(x) - np.sin(x))) < 1e-15 and np.max(np.abs(pm.cos(x) - np.cos(x))) < 1e-15
    y, z = rng.normal(size=20000), rng.normal(size=20000)
    assert np.max(np.abs(pm.arctan2(y, z) - np.arctan2(y, z))) < 1e-15
    p = rng.uniform(1e-6, 100, 20000)
    assert np.max(np.abs(pm.log(p) - np.log(p))) < 1e-14 and np.max(np.abs(pm.power(p, 0.7) / p**0.7 - 1)) < 1e-14
    image = (rng.random((40, 40)) > 0.5).astype(np.float64)
    assert np.max(np.abs(pm.gaussian_filter(image, 0.8) - ndimage.gaussian_filter(image, 0.8))) < 1e-15
