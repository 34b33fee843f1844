#!/usr/bin/env python3
"""Fits the polynomials of synthgen's normal draws (src/models/noise.rs, `CENTRAL` and `TAIL`)
and checks the f32 quantile built on them on every value the draws can give.

The quantile of the uniform u = (j + 1/2) / 2^24 (j: 24 random bits) is x q(w) with
x = 2u - 1, w = -ln(1 - x^2) and q(w) = sqrt(2) erfinv(x) / x. q is fitted by Chebyshev
least squares of degree 9 in (w - 2.5) / 2.5 on w in [0, 5], and in (sqrt w - m) / h on
sqrt w in [sqrt 5, 4] (the largest w a draw gives is 15.94). Needs numpy and scipy:

    python3 scripts/normal-quantile-fit.py
"""
import numpy as np
from numpy.polynomial import chebyshev
from scipy.special import erfinv

F32 = np.float32
DEGREE = 9


def q_of_w(w):
    x = np.maximum(np.sqrt(-np.expm1(-w)), 1e-300)
    return np.sqrt(2) * erfinv(x) / x


def fit(lo, hi, f):
    nodes = np.cos(np.pi * (np.arange(4000) + 0.5) / 4000)
    coefficients = chebyshev.chebfit(nodes, f((lo + hi) / 2 + (hi - lo) / 2 * nodes), DEGREE)
    return chebyshev.cheb2poly(coefficients).astype(F32)


def ln_f32(a):
    """noise.rs `ln_positive`, operation for operation in f32."""
    bits = a.view(np.uint32)
    m = ((bits & 0x007FFFFF) | 0x3F800000).view(F32)
    big = m > F32(np.sqrt(2))
    m = np.where(big, F32(0.5) * m, m).astype(F32)
    e = ((bits >> 23).astype(np.int32) - 127 + big).astype(F32)
    s = ((m - F32(1)) / (m + F32(1))).astype(F32)
    s2 = (s * s).astype(F32)
    p = F32(1 / 9) * s2 + F32(1 / 7)
    for c in (1 / 5, 1 / 3, 1.0):
        p = (p * s2 + F32(c)).astype(F32)
    return (e * F32(np.log(2)) + F32(2) * s * p).astype(F32)


def horner(coefficients, t):
    acc = np.zeros_like(t)
    for c in coefficients[::-1]:
        acc = (acc * t + c).astype(F32)
    return acc


central = fit(0.0, 5.0, q_of_w)
mid, half = (np.sqrt(5) + 4) / 2, (4 - np.sqrt(5)) / 2
tail = fit(np.sqrt(5), 4.0, lambda s: q_of_w(s * s))
for name, c in (("CENTRAL", central), ("TAIL", tail)):
    print(f"{name}: " + ", ".join(repr(float(v)) for v in c))

# Every positive x a draw gives (the negative ones mirror them).
v = np.arange(1, 1 << 24, 2)
x = (v.astype(F32) * F32(2.0**-24)).astype(F32)
w = (-ln_f32(((F32(1) - x) * (F32(1) + x)).astype(F32))).astype(F32)
qc = horner(central, (w * F32(1 / 2.5) - F32(1)).astype(F32))
qt = horner(tail, (np.sqrt(w) * F32(1 / half) - F32(mid / half)).astype(F32))
z = (x * np.where(w < F32(5), qc, qt)).astype(F32)
exact = np.sqrt(2) * erfinv(v * 2.0**-24)
error = np.abs(z - exact) / exact
print(f"largest relative error {error.max():.2e} (at z = {exact[error.argmax()]:.3f}); "
      f"strictly increasing: {bool(np.all(np.diff(z) > 0))}; largest z {z.max():.4f}")
