#!/usr/bin/python3
"""Fit of the rational erf approximation used in src/model/fastmath.h (x P(x^2)/Q(x^2) on
[0, 4]); prints the float32 max error of each degree pair and the chosen coefficients."""
import numpy as np
from scipy.special import erf
from scipy.optimize import least_squares
# erf(x) ~ x * P(x^2) / Q(x^2) on [0, 4]; weighted towards relative error
x = np.concatenate([np.linspace(1e-4, 4, 20000), np.linspace(3.5, 4.0, 2000)])
f = erf(x)
def model(c, x, np_=7):
    z = x * x
    P = np.polyval(c[:np_][::-1], z)
    Q = np.polyval(np.concatenate([[1.0], c[np_:]])[::-1], z)
    return x * P / Q
best = None
for (npd, nqd) in [(7, 5), (7, 6), (8, 6)]:
    # linearised start: x P(z) - f Q(z) = 0 with Q(0) = 1
    z = x * x
    A = np.hstack([x[:, None] * z[:, None] ** np.arange(npd), -(f[:, None] * z[:, None] ** np.arange(1, nqd + 1))])
    c0, *_ = np.linalg.lstsq(A, f, rcond=None)
    for it in range(30):  # Loeb reweighting
        Q = 1 + (z[:, None] ** np.arange(1, nqd + 1)) @ c0[npd:]
        A2 = A / Q[:, None]
        c0, *_ = np.linalg.lstsq(A2, f / Q, rcond=None)
    r = least_squares(lambda c: (model(c, x, npd) - f) / np.maximum(f, 1e-3), c0, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    c = r.x
    # evaluate in float32 like the C code (Horner)
    xs = np.linspace(-4.5, 4.5, 2000001).astype(np.float32)
    xc = np.clip(xs, np.float32(-4), np.float32(4))
    z32 = xc * xc
    P = np.float32(c[npd - 1])
    for k in range(npd - 2, -1, -1): P = P * z32 + np.float32(c[k])
    Q = np.float32(c[-1])
    for k in range(nqd - 2, -1, -1): Q = Q * z32 + np.float32(c[npd + k])
    Q = Q * z32 + np.float32(1.0)
    y = xc * P / Q
    y = np.clip(y, -1, 1)
    err = np.abs(y.astype(np.float64) - erf(xs.astype(np.float64)))
    print(npd, nqd, "max abs err", err.max(), "max rel (|x|>1e-3)", (err / np.abs(erf(xs.astype(np.float64)) + 1e-30))[np.abs(xs) > 1e-3].max())
    if best is None or err.max() < best[0]: best = (err.max(), npd, nqd, c)
print(best[1], best[2]); print(repr(best[3].tolist()))
