"""Maximisation over unstructured (UN) correlation matrices through their angles.

A UN term's correlations must form a positive semidefinite matrix R. The Newton method of
:mod:`mlmeta.core.optimize` works on the correlations themselves, boxed to [-1, 1], and treats a
point outside the positive semidefinite cone as impossible (log-likelihood -inf). When the
maximum lies on the cone's boundary (R singular, as happens with few clusters: metafor then
reports a G with a zero eigenvalue), every Newton step from near it leaves the cone, and the
line search finds no ascent.

Here each such R is written through the angles of its Cholesky factor (Pinheiro & Bates, 1996;
Rapisarda, Brigo & Mercurio, 2007): R = L L', row i of L is the unit vector

    L[i, 0] = cos a_i1,  L[i, j] = cos a_i(j+1) prod_{l <= j} sin a_il,  L[i, i] = prod_l sin a_il,

so every real angle vector gives a valid R, and a singular R (some L[i, i] = 0) is an interior
point of the angle space. L-BFGS-B maximises the log-likelihood over the angles and the other
free parameters (variances within their bounds), with the exact gradient of the likelihood
carried to the angles by the chain rule (the Jacobian of the angle map by central differences,
accurate to ~1e-10: the map is a product of sines and cosines).

References: Pinheiro, J. C., & Bates, D. M. (1996). Unconstrained parametrizations for
variance-covariance matrices. Statistics and Computing, 6, 289-296. Rapisarda, F., Brigo, D., &
Mercurio, F. (2007). Parameterizing correlations: a geometric interpretation. IMA Journal of
Management Mathematics, 18(1), 55-73.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mlmeta.core.optimize import OptimResult

__all__ = ["angles_from_corr", "corr_from_angles", "maximize_over_angles"]


def _pairs(m: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(m) for b in range(a + 1, m)]


def corr_from_angles(angles: np.ndarray, m: int) -> np.ndarray:
    """The correlations r_ab (pairs a < b in R's lower.tri order) of R = L L' built from the
    m (m - 1) / 2 angles (row by row: a_21; a_31, a_32; ...)."""
    L = np.zeros((m, m))
    L[0, 0] = 1.0
    k = 0
    for i in range(1, m):
        s = 1.0
        for j in range(i):
            L[i, j] = np.cos(angles[k]) * s
            s *= np.sin(angles[k])
            k += 1
        L[i, i] = s
    R = L @ L.T
    return np.array([R[b, a] for a, b in _pairs(m)])


def angles_from_corr(rho: np.ndarray, m: int) -> np.ndarray:
    """Angles of a correlation matrix (made positive definite first by shrinking it towards the
    identity when needed), the inverse of :func:`corr_from_angles`."""
    R = np.eye(m)
    for r, (a, b) in zip(np.asarray(rho, dtype=float), _pairs(m)):
        R[a, b] = R[b, a] = r
    for shrink in (1.0, 0.99, 0.9, 0.5, 0.0):
        Rs = shrink * R + (1.0 - shrink) * np.eye(m)
        try:
            L = np.linalg.cholesky(Rs)
            break
        except np.linalg.LinAlgError:
            continue
    out = []
    for i in range(1, m):
        s = 1.0
        for j in range(i):
            c = float(np.clip(L[i, j] / s, -1.0, 1.0)) if s > 1e-300 else 1.0
            ang = float(np.arccos(c))
            out.append(ang)
            s *= np.sin(ang)
    return np.array(out)


def maximize_over_angles(
    fun: Callable,
    theta0: np.ndarray,
    free: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    blocks: Sequence[tuple[np.ndarray, int]],
    *,
    attempts: Sequence[str] = (),
) -> OptimResult | None:
    """Maximise ``fun(theta, order).ll`` with each block's correlations (``theta[idx]``, the
    m (m - 1) / 2 correlations of an m x m UN matrix, all free) written as angles; the other
    free entries keep their bounds. Returns None when L-BFGS-B does not converge."""
    from scipy import optimize as sopt

    theta0 = np.array(theta0, dtype=float)
    free = np.asarray(free, dtype=bool)
    in_block = np.zeros(len(theta0), dtype=bool)
    for idx, _ in blocks:
        in_block[idx] = True
    plain = np.flatnonzero(free & ~in_block)
    n_plain = len(plain)
    sizes = [len(idx) for idx, _ in blocks]

    def to_theta(u: np.ndarray) -> np.ndarray:
        th = theta0.copy()
        th[plain] = u[:n_plain]
        pos = n_plain
        for (idx, m), n in zip(blocks, sizes):
            th[idx] = corr_from_angles(u[pos : pos + n], m)
            pos += n
        return th

    def negll(u: np.ndarray):
        th = to_theta(u)
        ev = fun(th, 1)
        if not np.isfinite(ev.ll):
            return 1e300, np.zeros_like(u)
        g = np.empty_like(u)
        g[:n_plain] = ev.grad[plain]
        pos = n_plain
        for (idx, m), n in zip(blocks, sizes):
            a = u[pos : pos + n]
            h = 1e-6
            J = np.empty((n, n))  # d rho / d angle
            for j in range(n):
                e = np.zeros(n)
                e[j] = h
                J[:, j] = (corr_from_angles(a + e, m) - corr_from_angles(a - e, m)) / (2 * h)
            g[pos : pos + n] = J.T @ ev.grad[idx]
            pos += n
        return -ev.ll, -g

    u0 = [np.clip(theta0[plain], lower[plain], upper[plain])]
    u0 += [angles_from_corr(theta0[idx], m) for idx, m in blocks]
    x0 = np.concatenate(u0)
    bounds = [
        (
            None if not np.isfinite(lower[i]) else lower[i],
            None if not np.isfinite(upper[i]) else upper[i],
        )
        for i in plain
    ] + [(None, None)] * int(sum(sizes))
    r = sopt.minimize(
        negll,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-9, "maxcor": 30},
    )
    th = to_theta(r.x)
    ev = fun(th, 2)
    g = negll(r.x)[1]
    # a variance held at its bound by a gradient pointing outward counts as converged
    for j, i in enumerate(plain):
        if (r.x[j] <= lower[i] and g[j] > 0) or (r.x[j] >= upper[i] and g[j] < 0):
            g[j] = 0.0
    gnorm = float(np.max(np.abs(g))) if len(g) else 0.0
    if not np.isfinite(ev.ll) or gnorm > 1e-5 * max(1.0, abs(ev.ll)):
        return None
    return OptimResult(
        th,
        ev,
        int(r.nit),
        True,
        gnorm,
        "lbfgsb (UN correlations as angles)",
        (*attempts, f"L-BFGS-B over the UN correlations' angles: {r.message}"),
    )
