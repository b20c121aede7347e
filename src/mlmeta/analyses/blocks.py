"""Optional result blocks by name: the ``--with`` blocks of ``mlmeta fit --json``.

Each block has the keys and layout of the reference cases' ``expect`` blocks (see
tests/fixtures/reference/README.md), so the output can be compared with metafor directly.
"""

from __future__ import annotations

import numpy as np

from mlmeta.analyses import BLOCKS

__all__ = ["BLOCKS", "compute_blocks"]


def _py(x):
    return x.item() if hasattr(x, "item") else x


def _block(res, name):
    if name == "I2":
        return res.i2().to_dict()
    if name == "R2":
        d = res.r2().to_dict()
        d["metafor"] = None
        return d
    if name == "profile_ci":
        return res.profile_ci().to_list()
    if name == "lrt_drop":
        return res.lrt_drop().to_list()
    if name in ("robust_cr2", "robust_cr1"):
        return res.robust(type="CR2" if name == "robust_cr2" else "CR1").to_dict()
    if name == "egger":
        return res.egger().to_dict()
    if name == "loo_cluster":
        tab = res.loo_cluster()
        return [
            {
                "left_out": _py(r.left_out),
                "beta": _f(r.beta),
                "se": _f(r.se),
                "sigma2": [float(x) for x in np.atleast_1d(r.sigma2)],
                "I2": _f(r.I2),
            }
            for r in tab.itertuples()
        ]
    if name == "cooks_cluster":
        tab = res.cooks_cluster()
        return [{"cluster": _py(r.cluster), "value": _f(r.value)} for r in tab.itertuples()]
    if name == "rstandard":
        t = res.rstandard()
        return {"resid": t["resid"].tolist(), "z": t["z"].tolist(), "se": t["se"].tolist()}
    if name == "R2_marginal":
        return res.r2(kind="marginal").to_dict()
    if name == "hatvalues":
        return [_f(x) for x in res.hatvalues()]
    if name == "ranef":
        return {
            lv: {
                "level": [str(x) for x in t.index],
                "pred": [_f(x) for x in t["pred"]],
                "se": [_f(x) for x in t["se"]],
                "pi_lb": [_f(x) for x in t["pi_lb"]],
                "pi_ub": [_f(x) for x in t["pi_ub"]],
            }
            for lv, t in res.ranef().items()
        }
    if name == "rstudent":
        return res.rstudent().to_dict()
    if name == "dfbetas":
        t = res.dfbetas()
        return {c: [_f(x) for x in t[c]] for c in t.columns}
    raise KeyError(name)


def _f(x):
    if np.ndim(x):
        return [float(v) for v in np.ravel(x)]
    x = float(x)
    return x if np.isfinite(x) else None


def compute_blocks(res, blocks) -> dict:
    """The named blocks; a block that does not apply to the model (e.g. R2 without
    moderators) is reported as None with the reason under ``block_notes``."""
    from mlmeta.errors import InputError

    out, notes = {}, {}
    for b in blocks:
        try:
            out[b] = _block(res, b)
        except InputError as exc:
            out[b] = None
            notes[b] = str(exc)
    if notes:
        out["block_notes"] = notes
    return out
