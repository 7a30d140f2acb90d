"""Elementary functions that give the same bits on every machine, for the procedural demo images.

Why: numpy chooses the SIMD code of ``exp``, ``sin``, ``cos``, ``arctan2``, ``power`` at run time from
the CPU's features (baseline SSE, AVX2 with FMA, AVX-512, Intel's SVML), OpenBLAS chooses its matrix
kernels by CPU model, and scipy's ``gaussian_filter`` builds its kernel with ``numpy.exp``. Those
paths differ in the last bits. Measured on the 120-image example set: forcing numpy to its baseline
code changed 10 of 5.9 million uint8 pixels, another OpenBLAS kernel 1 to 10; each flipped pixel
changes a JPEG, so the dataset fingerprint and everything trained on it.

IEEE 754 makes ``+ - * /`` and ``sqrt`` correctly rounded, so the same on every machine, and numpy
never fuses two ufunc calls into one multiply-add. The functions here use nothing else: float64,
range reduction, then a fixed polynomial in a fixed order (about 1e-16 relative error, invisible
after rounding to uint8). The sums are accumulated in a fixed order too (``fixed_order_matmul``).
"""

from __future__ import annotations

import numpy as np

# Cody-Waite splits (fdlibm): the high parts have trailing zero bits, so k * HI is exact.
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
PIO2_HI = 1.57079632673412561417e00
PIO2_LO = 6.07710050650619224932e-11
PI = 3.141592653589793
TAN_PI_8 = 0.41421356237309503

_EXP_TERMS = 14  # |r| <= ln2/2: r**14/14! < 1e-17
_TRIG_TERMS = 9  # |r| <= pi/4: r**17/17! < 1e-16
_ATAN_TERMS = 24  # |u| <= tan(pi/8): u**49/49 < 1e-19
_LOG_TERMS = 12  # |s| <= 0.1716: s**25/25 < 1e-20


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def exp(x) -> np.ndarray:
    """e**x: x = k ln2 + r, e**r by its Taylor polynomial, times 2**k (exact)."""
    x = np.clip(_f64(x), -708.0, 709.0)
    k = np.rint(x / (LN2_HI + LN2_LO))
    r = (x - k * LN2_HI) - k * LN2_LO
    p = np.ones_like(r)
    for n in range(_EXP_TERMS, 0, -1):  # Horner: 1 + r/1 (1 + r/2 (1 + ...))
        p = 1.0 + r * p / n
    return np.ldexp(p, k.astype(np.int64))


def _reduce_quarter_turns(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.rint(x / (PIO2_HI + PIO2_LO))
    return (x - n * PIO2_HI) - n * PIO2_LO, np.mod(n, 4.0)


def _sin_poly(r: np.ndarray) -> np.ndarray:
    r2, p = r * r, np.zeros_like(r)
    for n in range(_TRIG_TERMS, 0, -1):  # r - r^3/3! + ... from the innermost term out
        p = 1.0 - r2 * p / ((2 * n) * (2 * n + 1))
    return r * p


def _cos_poly(r: np.ndarray) -> np.ndarray:
    r2, p = r * r, np.zeros_like(r)
    for n in range(_TRIG_TERMS, 0, -1):
        p = 1.0 - r2 * p / ((2 * n - 1) * (2 * n))
    return p


def sin(x) -> np.ndarray:
    r, quarter = _reduce_quarter_turns(_f64(x))
    s, c = _sin_poly(r), _cos_poly(r)
    return np.select([quarter == 0, quarter == 1, quarter == 2], [s, c, -s], -c)


def cos(x) -> np.ndarray:
    r, quarter = _reduce_quarter_turns(_f64(x))
    s, c = _sin_poly(r), _cos_poly(r)
    return np.select([quarter == 0, quarter == 1, quarter == 2], [c, -s, -c], s)


def _atan_unit(t: np.ndarray) -> np.ndarray:
    """atan(t) for 0 <= t <= 1: atan(t) = pi/4 + atan((t - 1) / (t + 1)) above tan(pi/8), then the series."""
    high = t > TAN_PI_8
    u = np.where(high, (t - 1.0) / (t + 1.0), t)
    u2, p = u * u, np.zeros_like(u)
    for n in range(_ATAN_TERMS, 0, -1):  # u - u^3/3 + u^5/5 - ...
        p = 1.0 / (2 * n - 1) - u2 * p
    return np.where(high, PI / 4, 0.0) + u * p


def arctan2(y, x) -> np.ndarray:
    """The angle of (x, y) in [-pi, pi], as numpy's ``arctan2`` (0 at the origin)."""
    y, x = np.broadcast_arrays(_f64(y), _f64(x))
    a, b = np.abs(y), np.abs(x)
    big, small = np.maximum(a, b), np.minimum(a, b)
    t = np.divide(small, big, out=np.zeros_like(big), where=big > 0)
    angle = _atan_unit(t)
    angle = np.where(a > b, PI / 2 - angle, angle)
    angle = np.where(x < 0, PI - angle, angle)
    return np.where(y < 0, -angle, angle)


def log(x) -> np.ndarray:
    """Natural log of positive x: x = m 2**e with m in [sqrt(1/2), sqrt(2)), log m by the atanh series."""
    m, e = np.frexp(_f64(x))
    low = m < np.sqrt(0.5)
    m, e = np.where(low, m * 2.0, m), np.where(low, e - 1, e).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    s2, p = s * s, np.zeros_like(s)
    for n in range(_LOG_TERMS, 0, -1):  # 2 (s + s^3/3 + s^5/5 + ...)
        p = 1.0 / (2 * n - 1) + s2 * p
    return 2.0 * s * p + e * LN2_LO + e * LN2_HI


def power(x, exponent: float) -> np.ndarray:
    """x**exponent for x >= 0 (0 at 0 for a positive exponent)."""
    x = _f64(x)
    safe = np.where(x > 0, x, 1.0)
    return np.where(x > 0, exp(exponent * log(safe)), 0.0)


def hypot(a, b) -> np.ndarray:
    a, b = _f64(a), _f64(b)
    return np.sqrt(a * a + b * b)


def fixed_order_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in float64, summed over the inner index in order (BLAS picks its order by CPU model)."""
    a, b = _f64(a), _f64(b)
    out = np.zeros((a.shape[0], b.shape[1]))
    for k in range(a.shape[1]):
        out += a[:, k : k + 1] * b[k : k + 1, :]
    return out


def gaussian_filter(image: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter`` (mode reflect) with the kernel's weights from ``exp`` above."""
    from scipy import ndimage

    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    out = ndimage.correlate1d(_f64(image), weights, axis=0, mode="reflect")
    return ndimage.correlate1d(out, weights, axis=1, mode="reflect")


__all__ = ["arctan2", "cos", "exp", "fixed_order_matmul", "gaussian_filter", "hypot", "log", "power", "sin"]
