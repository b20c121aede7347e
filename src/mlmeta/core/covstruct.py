"""Covariance structures of ``~ inner | outer`` random-effects terms (metafor's ``struct``).

A term ``~ inner | outer`` gives every outer group ``o`` one random effect per inner level ``a``,
``u_{o,a}``, with ``Cov(u_{o,a}, u_{o,b}) = G[a, b]`` and independence across outer groups
(metafor: ``(Z_1 G Z_1') * (Z_2 Z_2')``). The inner levels are numbered 0..m-1 in R's
``factor()`` order; structures that use positions (AR, HAR) use these numbers.

=======  =====================================  =========================================
struct   G[a, b]                                 parameters (internal, in this order)
=======  =====================================  =========================================
ID       tau2 [a == b]                           tau2
DIAG     tau2_a [a == b]                         tau2_1..tau2_m
CS       tau2 (rho + (1 - rho) [a == b])         tau2, rho
HCS      s_a s_b (rho + (1 - rho) [a == b])      s_1..s_m (tau2_a = s_a^2), rho
AR       tau2 rho^|a - b|                        tau2, rho
HAR      s_a s_b rho^|a - b|                     s_1..s_m, rho
UN       s_a s_b rho_ab  (rho_aa = 1)            s_1..s_m, rho_ab in R's lower.tri order
=======  =====================================  =========================================

Variances enter linearly where they can (tau2 >= 0, the boundary 0 is reachable exactly); the
heteroscedastic structures use standard deviations ``s_a >= 0`` so that ``G`` stays a polynomial
in the parameters (``sqrt(tau2_a tau2_b)`` has no derivative at 0). Correlations are kept on
their natural scale, boxed to [-1, 1]; UN additionally requires ``G`` positive semidefinite (as
metafor's Cholesky parametrisation does). Reported values are metafor's ``tau2`` (one per inner
level for DIAG, HCS, HAR, UN) and ``rho`` (left out for ID and DIAG; UN: ab, ac, bc, ...).

:func:`CovStruct.derivs` returns ``G`` with its exact first and second derivatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["STRUCTS", "CovStruct", "lower_tri_pairs"]

STRUCTS = ("CS", "HCS", "UN", "AR", "HAR", "ID", "DIAG")


def lower_tri_pairs(m: int) -> list[tuple[int, int]]:
    """Pairs ``(a, b)``, ``a < b``, in R's ``lower.tri`` (column-major) order: ab, ac, bc for 3."""
    return [(a, b) for a in range(m) for b in range(a + 1, m)]


@dataclass(frozen=True)
class CovStruct:
    """Parametrisation of one ``m x m`` inner covariance matrix ``G``.

    Attributes
    ----------
    struct : one of :data:`STRUCTS`.
    m : number of inner levels.
    """

    struct: str
    m: int

    def __post_init__(self) -> None:
        if self.struct not in STRUCTS:  # pragma: no cover - validated by the caller
            raise ValueError(f"unknown struct {self.struct!r}")

    # ---- parameter bookkeeping -------------------------------------------------------------
    @property
    def n_var(self) -> int:
        """Number of variance (or standard deviation) parameters."""
        return self.m if self.struct in ("DIAG", "HCS", "HAR", "UN") else 1

    @property
    def n_cor(self) -> int:
        """Number of correlation parameters (metafor's count: UN m(m-1)/2, at least 1)."""
        if self.struct in ("ID", "DIAG"):
            return 0
        if self.struct == "UN":
            return max(1, self.m * (self.m - 1) // 2)
        return 1

    @property
    def n_params(self) -> int:
        return self.n_var + self.n_cor

    @property
    def sd_scale(self) -> bool:
        """True when the variance parameters are standard deviations (tau2 = s^2)."""
        return self.struct in ("HCS", "HAR", "UN")

    @property
    def kinds(self) -> tuple[str, ...]:
        """``'var'``, ``'sd'`` or ``'cor'`` per parameter."""
        v = "sd" if self.sd_scale else "var"
        return (v,) * self.n_var + ("cor",) * self.n_cor

    @property
    def lower(self) -> np.ndarray:
        return np.array([0.0] * self.n_var + [-1.0] * self.n_cor)

    @property
    def upper(self) -> np.ndarray:
        return np.array([np.inf] * self.n_var + [1.0] * self.n_cor)

    @property
    def requires_psd(self) -> bool:
        return self.struct == "UN"

    def cor_pairs(self) -> list[tuple[int, int]]:
        """The inner-level pair of each correlation parameter (UN only; others: all pairs)."""
        return lower_tri_pairs(self.m)

    # ---- conversions -----------------------------------------------------------------------
    def report(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """metafor's ``tau2`` and ``rho`` from the internal parameters."""
        phi = np.asarray(phi, dtype=float)
        v = phi[: self.n_var]
        tau2 = v * v if self.sd_scale else v.copy()
        return tau2, phi[self.n_var :].copy()

    def internal(self, tau2, rho) -> np.ndarray:
        """Internal parameters from metafor's ``tau2`` and ``rho`` (scalars are recycled)."""
        t = np.broadcast_to(np.asarray(tau2, dtype=float), (self.n_var,)).copy()
        r = np.broadcast_to(np.asarray(rho, dtype=float), (self.n_cor,)).copy()
        if self.sd_scale:
            t = np.sqrt(np.maximum(t, 0.0))
        return np.r_[t, r]

    # ---- the matrix and its derivatives ----------------------------------------------------
    def matrix(self, phi: np.ndarray) -> np.ndarray:
        """``G`` at ``phi``."""
        return self.derivs(phi, 0)[0]

    def derivs(self, phi: np.ndarray, order: int = 2):
        """``G`` (m, m), ``dG`` (n, m, m) and ``d2G`` (n, n, m, m) at ``phi`` (``order`` 0-2).

        Every entry of ``G`` is a polynomial in the parameters (AR: ``rho^|a-b|``), so the
        derivatives are exact.
        """
        phi = np.asarray(phi, dtype=float)
        m, n, nv = self.m, self.n_params, self.n_var
        s = self.struct
        eye = np.eye(m)
        dG = np.zeros((n, m, m)) if order >= 1 else None
        d2G = np.zeros((n, n, m, m)) if order >= 2 else None
        if s in ("ID", "DIAG"):
            if s == "ID":
                G = phi[0] * eye
                if dG is not None:
                    dG[0] = eye
            else:
                G = np.diag(phi[:m])
                if dG is not None:
                    for a in range(m):
                        dG[a, a, a] = 1.0
            return G, dG, d2G
        if s in ("CS", "AR"):
            t, r = phi[0], phi[1]
            C, dC, d2C = _cor_matrix(s, m, r)
            G = t * C
            if dG is not None:
                dG[0] = C
                dG[1] = t * dC
            if d2G is not None:
                d2G[0, 1] = d2G[1, 0] = dC
                d2G[1, 1] = t * d2C
            return G, dG, d2G
        # sd-scaled structures: G = diag(sd) C diag(sd)
        sd = phi[:nv]
        if s == "UN":
            C = eye.copy()
            for j, (a, b) in enumerate(lower_tri_pairs(m)):
                C[a, b] = C[b, a] = phi[nv + j]
            dC_list = []
            for a, b in lower_tri_pairs(m):
                E = np.zeros((m, m))
                E[a, b] = E[b, a] = 1.0
                dC_list.append(E)
            if m < 2:  # metafor's single dummy correlation; it does not enter G
                dC_list = [np.zeros((m, m))]
            d2C_cc = None
        else:
            C, dC1, d2C1 = _cor_matrix("CS" if s == "HCS" else "AR", m, phi[nv])
            dC_list = [dC1]
            d2C_cc = d2C1
        SS = np.outer(sd, sd)
        G = SS * C
        if dG is None:
            return G, dG, d2G
        # d G / d s_a = (e_a sd' + sd e_a') * C
        dSS = []
        for a in range(nv):
            E = np.zeros((m, m))
            E[a, :] += sd
            E[:, a] += sd
            dSS.append(E)
            dG[a] = E * C
        for j, dC in enumerate(dC_list):
            dG[nv + j] = SS * dC
        if d2G is not None:
            for a in range(nv):
                for b in range(nv):
                    E = np.zeros((m, m))
                    E[a, b] += 1.0
                    E[b, a] += 1.0
                    d2G[a, b] = E * C
                for j, dC in enumerate(dC_list):
                    d2G[a, nv + j] = d2G[nv + j, a] = dSS[a] * dC
            if d2C_cc is not None:
                d2G[nv, nv] = SS * d2C_cc
        return G, dG, d2G


def _cor_matrix(kind: str, m: int, r: float):
    """CS or AR correlation matrix with its first and second derivative in ``r``."""
    if kind == "CS":
        off = 1.0 - np.eye(m)
        return np.eye(m) + r * off, off, np.zeros((m, m))
    d = np.abs(np.subtract.outer(np.arange(m), np.arange(m))).astype(float)
    C = np.where(d == 0, 1.0, _pow(r, d))
    dC = np.where(d >= 1, d * _pow(r, d - 1.0), 0.0)
    d2C = np.where(d >= 2, d * (d - 1.0) * _pow(r, d - 2.0), 0.0)
    return C, dC, d2C


def _pow(r: float, e: np.ndarray) -> np.ndarray:
    """``r ** e`` elementwise with ``0 ** 0 = 1`` and no warnings for negative ``r``."""
    out = np.ones_like(e)
    nz = e > 0
    out[nz] = np.power(r, e[nz])
    return out
