"""``mlmeta power``: power, minimum detectable effect or number of studies for a meta-analysis of
dependent effect sizes (POMADE's approximations; Vembye, Pustejovsky & Pigott 2023, JEBS,
doi:10.3102/10769986221127379).

::

    mlmeta power --studies 27 --effect -0.12 --tau 0.08 --omega 0.05 --rho 0.6 \\
                 --sigma2 0.0079 --es-per-study 1.8 --model CHE --df rve
    mlmeta power ... --target mdes --power 0.8          # smallest detectable effect
    mlmeta power ... --target studies --power 0.8       # studies needed (never fewer than 5)
    mlmeta power ... --sigma2 variances.csv --es-per-study k.csv --iterations 1000 --seed 1

``--sigma2`` and ``--es-per-study`` take a number or a one-column CSV file (header optional):
values of a file are an empirical distribution from which every iteration draws J studies with
replacement (two files of the same length: rows drawn as pairs); with ``--fixed-design`` the
rows ARE the studies. ``--json`` prints one object: ``power``, ``df``, ``var_b`` (and ``mcse``,
``iterations``, ...) for ``--target power``, ``mdes`` or ``studies`` for the others.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os

from mlmeta.errors import InputError

__all__ = ["CLI_NAMES", "add_parser", "read_values", "run"]

#: how each input of :func:`mlmeta.power.api.check_inputs` is called on the command line
CLI_NAMES = {
    "J": "--studies",
    "mu": "--effect",
    "tau": "--tau",
    "omega": "--omega",
    "rho": "--rho",
    "sigma2": "--sigma2",
    "k": "--es-per-study",
    "model": "--model",
    "var_df": "--df",
    "alpha": "--alpha",
    "target_power": "--power",
    "iterations": "--iterations",
    "max_studies": "--max-studies",
}

_BALANCED_NOTE = (
    "Note: every study has the same sampling variance and number of effect sizes "
    "(a balanced design), which Vembye, Pustejovsky & Pigott (2023, Figures 2A-B) "
    "advise against; give CSV files of plausible values to draw studies from."
)


def add_parser(subparsers, name: str) -> argparse.ArgumentParser:
    """Register ``mlmeta power`` (argparse only; nothing heavy is imported)."""
    p = subparsers.add_parser(
        name,
        help="power, minimum detectable effect or studies needed (dependent effects)",
        description="Power of the test of the overall average effect in a meta-analysis of "
        "dependent effect sizes, the minimum detectable effect, or the number of "
        "studies needed: the approximations of Vembye, Pustejovsky & Pigott (2023, "
        "JEBS, doi:10.3102/10769986221127379), as R's POMADE.",
    )
    p.add_argument(
        "--studies",
        metavar="J",
        help="number of studies (a non-integer is rounded down); not with --target studies",
    )
    p.add_argument(
        "--effect",
        metavar="MU",
        help="effect size of practical concern, on the "
        "analysis scale (e.g. Fisher's z); not with --target mdes",
    )
    p.add_argument("--tau", required=True, help="between-study SD")
    p.add_argument("--omega", required=True, help="within-study SD (between effect sizes)")
    p.add_argument(
        "--rho",
        required=True,
        help="correlation between the sampling errors of effect sizes of the same study (0 to 1)",
    )
    p.add_argument(
        "--sigma2",
        required=True,
        metavar="S|FILE.csv",
        help="sampling variance of every effect size, or a one-column CSV of values",
    )
    p.add_argument(
        "--es-per-study",
        required=True,
        metavar="K|FILE.csv",
        help="effect sizes per study (may be non-integer, an average), or a "
        "one-column CSV of values",
    )
    p.add_argument(
        "--model",
        default="CHE",
        help="working model: CHE, MLMA or CE (CE only with --df rve); default CHE",
    )
    p.add_argument(
        "--df",
        default="rve",
        help="model (model-based variance, df J - 1), satt "
        "(model-based, Satterthwaite df) or rve (robust variance); default rve",
    )
    p.add_argument("--alpha", default="0.05", help="two-sided significance level (0.05)")
    p.add_argument(
        "--target",
        default="power",
        choices=["power", "mdes", "studies"],
        help="what to compute (default power)",
    )
    p.add_argument(
        "--power", default="0.8", metavar="P", help="target power for --target mdes/studies (0.8)"
    )
    p.add_argument(
        "--iterations",
        default="100",
        metavar="N",
        help="Monte Carlo iterations for designs drawn from CSV files (100)",
    )
    p.add_argument("--seed", default=None, metavar="S", help="seed of the random draws")
    p.add_argument(
        "--max-studies",
        default="10000",
        metavar="N",
        help="upper limit of the --target studies search (10000)",
    )
    p.add_argument(
        "--fixed-design",
        action="store_true",
        help="the CSV rows ARE the J studies, in order, no resampling",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _number(flag: str, text: str | None):
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{flag} must be a number; got {text!r}") from None


def _integer(flag: str, text: str | None, minimum: int):
    if text is None:
        return None
    try:
        v = int(text)
    except ValueError:
        raise InputError(f"{flag} must be an integer >= {minimum}; got {text!r}") from None
    return v


def read_values(flag: str, text: str, what: str, minimum: float, strict: bool):
    """A number, or the values of a one-column CSV file (a header line is optional).

    Each value must be a finite number above ``minimum`` (``strict``) or at least it; a bad
    file is refused with one line naming the flag, the file, the line and the value.
    """
    try:
        return float(text)
    except ValueError:
        pass
    if not os.path.isfile(text):
        raise InputError(f"{flag}: {text!r} is neither a number nor an existing file")
    rule = f"{'>' if strict else '>='} {minimum:g}"
    values: list[float] = []
    try:
        with open(text, newline="", encoding="utf-8-sig") as fh:
            for lineno, row in enumerate(csv.reader(fh), start=1):
                cells = [c.strip() for c in row]
                if not any(cells):
                    continue
                if len(cells) != 1:
                    raise InputError(
                        f"{flag} file {text!r}, line {lineno}: expected one column, "
                        f"got {len(cells)} ({','.join(cells)!r})"
                    )
                try:
                    v = float(cells[0])
                except ValueError:
                    if not values and lineno == 1:
                        continue  # header
                    raise InputError(
                        f"{flag} file {text!r}, line {lineno}: {what} must be a "
                        f"number; got {cells[0]!r}"
                    ) from None
                if not math.isfinite(v) or not (v > minimum if strict else v >= minimum):
                    raise InputError(
                        f"{flag} file {text!r}, line {lineno}: {what} must be "
                        f"{rule}; got {cells[0]!r}"
                    )
                values.append(v)
    except UnicodeDecodeError:
        raise InputError(f"{flag} file {text!r} is not a UTF-8 text (CSV) file") from None
    except OSError as exc:
        raise InputError(f"{flag}: cannot read {text!r} ({exc.strerror})") from None
    if not values:
        raise InputError(f"{flag} file {text!r} has no values")
    return values


def run(args) -> int:
    """Run ``mlmeta power`` on parsed arguments; prints text or one JSON object."""
    from mlmeta.power import api

    target = args.target
    if target in ("power", "mdes") and args.studies is None and not args.fixed_design:
        raise InputError(f"--studies (number of studies) is required with --target {target}")
    if target in ("power", "studies") and args.effect is None:
        raise InputError(
            f"--effect (effect size of practical concern) is required with --target {target}"
        )
    if target == "studies" and args.studies is not None:
        raise InputError(
            "--studies cannot be given with --target studies (it is what is "
            f"searched for); got {args.studies!r}"
        )
    if target == "mdes" and args.effect is not None:
        raise InputError(
            "--effect cannot be given with --target mdes (it is what is searched "
            f"for); got {args.effect!r}"
        )
    if target == "studies" and args.fixed_design:
        raise InputError(
            "--fixed-design cannot be used with --target studies: the studies of "
            "a fixed design are given, not searched for"
        )
    sigma2 = read_values("--sigma2", args.sigma2, "sampling variance", 0.0, strict=True)
    k = read_values(
        "--es-per-study", args.es_per_study, "number of effect sizes", 1.0, strict=False
    )
    seed = _integer("--seed", args.seed, 0)
    if seed is not None and seed < 0:
        raise InputError(f"--seed must be an integer >= 0; got {args.seed!r}")
    inp = api.check_inputs(
        J=_number("--studies", args.studies),
        mu=_number("--effect", args.effect),
        tau=_number("--tau", args.tau),
        omega=_number("--omega", args.omega),
        rho=_number("--rho", args.rho),
        sigma2=sigma2,
        k=k,
        model=args.model,
        var_df=args.df,
        alpha=_number("--alpha", args.alpha),
        target_power=_number("--power", args.power),
        iterations=_integer("--iterations", args.iterations, 1),
        max_studies=_integer("--max-studies", args.max_studies, 6),
        seed=seed,
        fixed_design=args.fixed_design,
        names=CLI_NAMES,
    )
    res: api.PowerResult | api.MdesResult | api.StudiesResult
    if target == "power":
        res = api.evaluate_power(inp)
    elif target == "mdes":
        res = api.evaluate_mdes(inp)
    else:
        res = api.evaluate_min_studies(inp)
    if args.json:
        out = {"target": target, **res.to_dict()}
        if seed is not None and res.design == "empirical":
            out["seed"] = seed
        print(json.dumps(out))
        return 0
    print(res)
    if res.design == "balanced":
        print(_BALANCED_NOTE)
    elif res.design == "empirical":
        print(
            f"Studies drawn with replacement from the given values ("
            f"{'seed ' + str(seed) if seed is not None else 'no --seed: not reproducible'})."
        )
    return 0
