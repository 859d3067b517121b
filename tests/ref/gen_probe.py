#!/usr/bin/python3
"""Goldens for the downstream classifiers (tests/test_probe.c), from
scikit-learn and NumPy (Debian python3-sklearn, python3-numpy).

Data: 5 overlapping Gaussian classes in 24 dimensions with very different
feature scales and one constant feature (standardisation must handle both),
200 training and 150 test points.

 - linear_fixed_proba.npy: StandardScaler + LogisticRegression(C = 1/(lambda n))
   at lambda = 1e-2 (the objective wobble minimises), test probabilities;
   linear_fixed_proba_exact.npy: the same optimum polished with SciPy;
 - linear_grid.json: wobble's documented lambda selection reproduced with
   scikit-learn: the stratified seeded split (probe.h), each lambda of the
   default grid fitted on the rest, best held-out accuracy (ties: lower
   held-out log-loss), refitted on everything; the chosen lambda, held-out
   accuracies and test accuracy; linear_grid_proba.npy its test probabilities;
 - knn_scores.npy: DINOv2-style weighted kNN (k = 20, T = 0.07) in NumPy;
 - fits.json: scipy.stats linregress / pearsonr / spearmanr on small series with ties.

usage: /usr/bin/python3 tests/ref/gen_probe.py  (writes tests/ref/probe/)
"""
import json
import os

import numpy as np
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe")
M64 = (1 << 64) - 1


def mix(z):
    """SplitMix64, as wobble_splitmix64 in src/core/internal.h"""
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def split(y, C, frac, seed):
    held = np.zeros(len(y), bool)
    for c in range(C):
        idx = [i for i in range(len(y)) if y[i] == c]
        if len(idx) < 2:
            continue
        idx.sort(key=lambda i: (mix(seed ^ mix(i)), i))
        h = int(np.floor(frac * len(idx) + 0.5))
        h = min(max(h, 1), len(idx) - 1)
        held[idx[:h]] = True
    return held


def fit(X, y, lam):
    clf = LogisticRegression(C=1.0 / (lam * len(y)), tol=1e-12, max_iter=100000)
    clf.fit(X, y)
    return clf


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261127)
    C, d, ntr, nte = 5, 24, 200, 150
    means = rng.normal(0, 1.0, (C, d))
    scales = np.exp(rng.uniform(-3, 3, d))

    def draw(n):
        y = np.arange(n) % C
        rng.shuffle(y)
        X = (means[y] + rng.normal(0, 2.2, (n, d))) * scales
        X[:, 5] = 4.0  # constant feature
        return X.astype(np.float32), y.astype(np.int32)

    Xtr, ytr = draw(ntr)
    Xte, yte = draw(nte)
    np.save(os.path.join(OUT, "train_x.npy"), Xtr)
    np.save(os.path.join(OUT, "train_y.npy"), ytr)
    np.save(os.path.join(OUT, "test_x.npy"), Xte)
    np.save(os.path.join(OUT, "test_y.npy"), yte)

    sc = StandardScaler().fit(Xtr.astype(np.float64))
    Ztr, Zte = sc.transform(Xtr.astype(np.float64)), sc.transform(Xte.astype(np.float64))

    clf = fit(Ztr, ytr, 1e-2)
    np.save(os.path.join(OUT, "linear_fixed_proba.npy"), clf.predict_proba(Zte).astype(np.float32))
    # scikit-learn stops on its relative loss change (ftol = 64 eps), here at a
    # gradient max-norm near 3e-6; the same objective polished by SciPy's
    # L-BFGS-B to a gradient below 1e-12 gives the exact optimum as well.
    lam, n = 1e-2, len(ytr)

    def fg(t):
        W, b = t[:C * d].reshape(C, d), t[C * d:]
        L = Ztr @ W.T + b
        L -= L.max(1, keepdims=True)
        P = np.exp(L)
        P /= P.sum(1, keepdims=True)
        f = -np.mean(np.log(P[np.arange(n), ytr])) + 0.5 * lam * np.sum(W * W)
        G = P.copy()
        G[np.arange(n), ytr] -= 1
        G /= n
        return f, np.concatenate([(G.T @ Ztr + lam * W).ravel(), G.sum(0)])

    t0 = np.concatenate([clf.coef_.ravel(), clf.intercept_])
    r = minimize(fg, t0, jac=True, method="L-BFGS-B", options={"ftol": 0, "gtol": 1e-13, "maxiter": 100000})
    W, b = r.x[:C * d].reshape(C, d), r.x[C * d:]
    L = Zte @ W.T + b
    P = np.exp(L - L.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    print("exact optimum: gradient", np.abs(fg(r.x)[1]).max(), "vs scikit-learn", np.abs(fg(t0)[1]).max())
    np.save(os.path.join(OUT, "linear_fixed_proba_exact.npy"), P.astype(np.float32))

    grid = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6]
    held = split(ytr, C, 0.2, 0)
    best, bacc, bll, accs = None, -1, 0, []
    for lam in grid:
        m = fit(Ztr[~held], ytr[~held], lam)
        p = m.predict_proba(Ztr[held])
        acc = float(np.mean(np.argmax(p, 1) == ytr[held]))
        ll = float(-np.mean(np.log(p[np.arange(held.sum()), ytr[held]])))
        accs.append(acc)
        if acc > bacc or (acc == bacc and ll < bll):
            best, bacc, bll = lam, acc, ll
    final = fit(Ztr, ytr, best)
    proba = final.predict_proba(Zte)
    np.save(os.path.join(OUT, "linear_grid_proba.npy"), proba.astype(np.float32))
    info = {"lambda": best, "holdout_accuracy": accs, "holdout_n": int(held.sum()),
            "held_out": [int(i) for i in np.nonzero(held)[0]],
            "test_accuracy": float(np.mean(np.argmax(proba, 1) == yte)), "grid": grid}
    with open(os.path.join(OUT, "linear_grid.json"), "w") as f:
        json.dump(info, f, indent=1)

    # kNN, DINOv2 semantics
    k, T = 20, 0.07
    A = Xtr / np.linalg.norm(Xtr, axis=1, keepdims=True)
    Q = Xte / np.linalg.norm(Xte, axis=1, keepdims=True)
    S = Q.astype(np.float64) @ A.astype(np.float64).T
    scores = np.zeros((nte, C))
    for i in range(nte):
        nn = np.argsort(-S[i], kind="stable")[:k]
        for j in nn:
            scores[i, ytr[j]] += np.exp(S[i, j] / T)
    np.save(os.path.join(OUT, "knn_scores.npy"), scores.astype(np.float32))
    # line fits: scipy.stats on small cases with ties and a constant series
    from scipy import stats
    cases = []
    frng = np.random.default_rng(7)
    for n in (2, 5, 12, 40):
        x = np.round(frng.uniform(0, 1, n), 1 if n > 5 else 3)  # rounding makes ties
        y = np.round(0.9 - 0.6 * x + frng.normal(0, 0.05, n), 2)
        lr = stats.linregress(x, y)
        case = {"x": x.tolist(), "y": y.tolist(), "slope": lr.slope, "intercept": lr.intercept,
                "r2": lr.rvalue ** 2, "pearson": stats.pearsonr(x, y)[0] if n > 2 else float(np.sign(lr.slope)),
                "spearman": stats.spearmanr(x, y)[0] if n > 2 else float(np.sign(lr.slope))}
        cases.append(case)
    with open(os.path.join(OUT, "fits.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print("lambda", best, "test acc", info["test_accuracy"], "knn acc", np.mean(np.argmax(scores, 1) == yte))


if __name__ == "__main__":
    main()
