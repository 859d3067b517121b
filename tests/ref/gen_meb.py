#!/usr/bin/python3
"""Reference radii for wobble's minimum enclosing ball (Debian python3-numpy,
python3-scipy).

- small instances (n <= 9, d <= 5, including duplicates and collinear
  points): brute force over every support set, independent of wobble's
  method: for each subset S of size 1..d+1 the ball centred in aff(S)
  equidistant from S; valid when the centre lies in conv(S) and the ball
  encloses every point; the answer is the smallest valid radius.
- random instances (n up to 60, d up to 256, unit vectors clustered like the
  embeddings of one image's perturbations): SciPy's SLSQP on the dual QP
  max sum l_i G_ii - l'Gl on the simplex, radius = largest distance from
  sum l_i p_i, refined by SciPy's lstsq on the support's equidistance
  equations.

Writes tests/ref/meb/<name>.npy (float64 points) and cases.tsv.
usage: /usr/bin/python3 tests/ref/gen_meb.py
"""
import itertools
import os

import numpy as np
from scipy.optimize import minimize

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "meb")


def brute(P):
    n, d = P.shape
    best = np.inf
    for m in range(1, min(n, d + 1) + 1):
        for S in itertools.combinations(range(n), m):
            Q = P[list(S)]
            G = Q @ Q.T
            A = np.zeros((m + 1, m + 1))
            A[:m, :m] = 2 * G
            A[:m, m] = 1
            A[m, :m] = 1
            b = np.concatenate([np.diag(G), [1.0]])
            try:
                x = np.linalg.solve(A, b)
            except np.linalg.LinAlgError:
                continue
            lam = x[:m]
            if np.any(lam < -1e-12) or not np.all(np.isfinite(lam)):
                continue
            c = lam @ Q
            r = np.sqrt(((Q - c) ** 2).sum(1)).max()
            if np.sqrt(((P - c) ** 2).sum(1)).max() <= r * (1 + 1e-12) + 1e-15:
                best = min(best, np.sqrt(((P - c) ** 2).sum(1)).max())
    return best


def scipy_radius(P):
    mu = P.mean(0)
    Q = P - mu
    G = Q @ Q.T
    n = len(P)
    dg = np.diag(G)
    f = lambda l: -(l @ dg - l @ G @ l)
    grad = lambda l: -(dg - 2 * G @ l)
    x0 = np.full(n, 1.0 / n)
    r = minimize(f, x0, jac=grad, method="SLSQP", bounds=[(0, 1)] * n,
                 constraints=[{"type": "eq", "fun": lambda l: l.sum() - 1, "jac": lambda l: np.ones(n)}],
                 options={"ftol": 1e-16, "maxiter": 2000})
    lam = np.clip(r.x, 0, None)
    lam /= lam.sum()
    S = np.where(lam > 1e-7 * lam.max())[0]
    # refine on the support: equidistance equations, least squares (SciPy/NumPy)
    m = len(S)
    A = np.zeros((m + 1, m + 1))
    A[:m, :m] = 2 * G[np.ix_(S, S)]
    A[:m, m] = 1
    A[m, :m] = 1
    b = np.concatenate([dg[S], [1.0]])
    x = np.linalg.lstsq(A, b, rcond=None)[0]
    if np.all(x[:m] >= 0):
        lam = np.zeros(n)
        lam[S] = x[:m]
    c = lam @ Q
    return np.sqrt(((Q - c) ** 2).sum(1)).max()


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(2026)
    rows = []
    small = []
    for i in range(24):
        n, d = int(rng.integers(2, 10)), int(rng.integers(2, 6))
        P = rng.normal(size=(n, d)) * rng.uniform(0.01, 3)
        small.append((f"small{i:02d}", P))
    P = rng.normal(size=(5, 3)); P[3] = P[1]; small.append(("duplicates", P))
    t = np.linspace(0, 1, 6)[:, None]; small.append(("collinear", t * np.array([[1.0, 2.0, -1.0]]) + 0.3))
    P = rng.normal(size=(4, 3)); P /= np.linalg.norm(P, axis=1, keepdims=True); small.append(("unit4", P))
    small.append(("single", rng.normal(size=(1, 4))))
    small.append(("antipodal", np.array([[1.0, 0, 0], [-1.0, 0, 0], [0.0, 0.6, 0.8]])))
    worst = 0.0
    for name, P in small:
        rb, rs = brute(P), scipy_radius(P)
        worst = max(worst, abs(rb - rs) / max(rb, 1e-300))
        np.save(os.path.join(OUT, name + ".npy"), P)
        rows.append(f"{name}\t{P.shape[0]}\t{P.shape[1]}\t{rb:.17g}\tbrute_force")
    print(f"gen_meb: {len(small)} brute-force instances; SciPy agrees within {worst:.1e} relative")
    for i, (n, d, spread) in enumerate([(10, 8, 0.3), (20, 16, 0.1), (30, 32, 0.05), (46, 64, 0.02), (46, 192, 0.01),
                                        (60, 256, 0.003), (40, 64, 1.0), (25, 128, 0.2)]):
        base = rng.normal(size=d)
        P = base + spread * rng.normal(size=(n, d)) * rng.uniform(0.2, 1.0, size=(n, 1))
        P /= np.linalg.norm(P, axis=1, keepdims=True)
        name = f"random{i}_n{n}_d{d}"
        np.save(os.path.join(OUT, name + ".npy"), P)
        rows.append(f"{name}\t{n}\t{d}\t{scipy_radius(P):.17g}\tscipy_slsqp")
    with open(os.path.join(OUT, "cases.tsv"), "w") as f:
        f.write("# name\tn\td\tradius\tmethod  (tests/ref/gen_meb.py)\n" + "\n".join(rows) + "\n")
    print(f"gen_meb: {len(rows)} cases written")


if __name__ == "__main__":
    main()
