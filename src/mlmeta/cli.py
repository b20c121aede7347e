"""Command line: ``mlmeta run ANALYSIS.toml``, ``mlmeta init DATA``, ``mlmeta fit DATA ...``
and ``mlmeta demo``.

``mlmeta run analysis.toml [--out DIR] [--quiet]`` runs a whole analysis described in a TOML file
(see :mod:`mlmeta.io.analysis` for the keys) and writes a report folder (default
``./<analysis-file-stem>-report/``; see :mod:`mlmeta.report`). ``mlmeta init DATA.csv [-o FILE]``
writes a commented analysis-file template guessed from the data file's columns.

Bad input ends with exit status 2 and one line on stderr naming the problem; no traceback
(set MLMETA_DEBUG=1 to see one). Warnings are printed as one line each on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from importlib import import_module
from pathlib import Path

from mlmeta.analyses import BLOCKS
from mlmeta.effects import registry as _registry
from mlmeta.errors import MlmetaError, MlmetaWarning
from mlmeta.io import read_table

__all__ = ["main"]

ESCALC_ARGS = _registry.ALL_ARGS  # every escalc column argument (metafor's names)
MEASURES = _registry.MEASURES  # every registered effect-size measure


#: sub-commands that live in their own modules: each module defines
#: ``add_parser(subparsers, name)`` (argparse only, imports nothing heavy) and ``run(args) -> int``.
COMMANDS: dict[str, str] = {"power": "mlmeta.power.cli"}
COMMANDS["app"] = "mlmeta.app.cli"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (main adds the "mlmeta: error: " prefix)
        sub = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        raise MlmetaError(f"{sub}: {message}" if sub else message)


def _add_fit_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("data", help="CSV, TSV, Excel or Parquet file")
    ap.add_argument("--yi", help="column of effect sizes")
    ap.add_argument("--vi", help="column of sampling variances")
    ap.add_argument(
        "--measure",
        type=str.upper,
        choices=MEASURES,
        help="compute yi/vi with escalc from raw columns",
    )
    for a in ESCALC_ARGS:
        ap.add_argument(f"--{a}", help=f"escalc column {a}")
    ap.add_argument(
        "--random",
        default=None,
        action="append",
        help="random-effects term, repeatable: a nesting such as study/es, or a "
        "formula such as '~ 1 | lab' or '~ outcome | trial'; 'none'",
    )
    ap.add_argument(
        "--struct",
        default=None,
        help="structure of the '~ inner | outer' terms, in order: CS, HCS, UN, AR, "
        "HAR, ID, DIAG (e.g. UN or UN,CS)",
    )
    ap.add_argument(
        "--R",
        dest="R",
        default=None,
        action="append",
        metavar="FACTOR=PATH",
        help="known correlation matrix of a factor's levels (CSV: header row and "
        "first column hold the level names); repeatable",
    )
    ap.add_argument(
        "--V",
        dest="V",
        default=None,
        metavar="PATH",
        help="known sampling covariance, long CSV row,col,value (1-based data rows, "
        "lower triangle with the diagonal); replaces --vi",
    )
    ap.add_argument(
        "--rho",
        default=None,
        type=float,
        help="constant sampling correlation within --rho-cluster (metafor's vcalc)",
    )
    ap.add_argument(
        "--rho-cluster",
        dest="rho_cluster",
        default=None,
        help="column whose rows share correlated sampling errors (default: the "
        "outer factor of the first random term)",
    )
    ap.add_argument("--mods", default=None, help="moderator formula, e.g. '~ phase'")
    ap.add_argument("--method", default="REML", type=str.upper, choices=["REML", "ML"])
    ap.add_argument("--test", default="z", choices=["z", "t"])
    ap.add_argument("--dfs", default="residual", choices=["residual", "contain"])
    ap.add_argument("--level", default=95.0, type=float, help="confidence level (percent)")
    ap.add_argument(
        "--sigma2",
        default=None,
        help="fix variance components, outer to inner: e.g. 'NA,0' estimates the "
        "first and fixes the second at 0",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument(
        "--with",
        dest="with_",
        default="",
        help="optional blocks of the --json output, comma-separated: " + ",".join(BLOCKS),
    )


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="mlmeta", description="Multilevel mixed-effects meta-analysis")
    sub = ap.add_subparsers(dest="cmd", parser_class=_Parser)
    f = sub.add_parser("fit", help="fit a model and print its summary (or JSON)")
    _add_fit_args(f)
    sub.add_parser("demo", help="fit the bundled (simulated) example and print the summary")
    r = sub.add_parser("run", help="run an analysis file (TOML) and write its report folder")
    r.add_argument("analysis", help="analysis file, e.g. examples/alliance_like.toml")
    r.add_argument(
        "--out", "-o", default=None, help="report folder (default: ./<analysis-file-stem>-report)"
    )
    r.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar, summary or warnings; print only the report path",
    )
    i = sub.add_parser("init", help="write a commented analysis-file template for a data file")
    i.add_argument("data", help="CSV, TSV, Excel or Parquet file")
    i.add_argument(
        "-o", "--output", default=None, help="write the template to this file (default: print it)"
    )
    i.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    for name, modname in COMMANDS.items():
        import_module(modname).add_parser(sub, name)
    ap.add_argument("--version", action="store_true", help="print the version")
    return ap


def _fit_from_args(a):
    import numpy as np  # noqa: F401

    from mlmeta.model import rma_mv

    df = read_table(a.data)
    measure = a.measure
    if measure:
        from mlmeta.effects import escalc

        kw = {x: getattr(a, x) for x in ESCALC_ARGS if getattr(a, x)}
        for col in kw.values():
            if col not in df.columns:
                raise MlmetaError(f"column {col!r} not found in {a.data!r}")
        es = escalc(measure, df, **kw)
        df = df.copy()
        df["yi"] = es["yi"].to_numpy()
        df["vi"] = es["vi"].to_numpy()
        yi, vi = "yi", "vi"
    else:
        if not a.yi or not (a.vi or a.V):
            raise MlmetaError(
                "give --yi COL and --vi COL, or --measure with its columns "
                "(e.g. --measure ZCOR --ri r --ni n)"
            )
        yi, vi = a.yi, a.vi or "vi"
    random = _random_arg(a.random)
    sigma2 = _sigma2_arg(a.sigma2, random)
    extra = _structure_args(a)
    return rma_mv(
        df,
        yi,
        vi,
        random=random,
        mods=a.mods,
        method=a.method,
        test=a.test,
        sigma2=sigma2,
        dfs=a.dfs,
        level=a.level,
        measure=measure,
        **extra,
    )


def _quick_summary(a) -> str | None:
    """The summary of ``mlmeta fit`` through the quick path (:mod:`mlmeta.io.light`: a plain
    CSV, nested random effects, no moderators; no pandas import), or None when the careful
    path must run: whenever the quick path meets anything it does not vouch for, raises or
    warns, the careful path runs instead and says what it says."""
    if (
        os.environ.get("MLMETA_CAREFUL")
        or a.mods
        or a.R
        or a.V
        or a.struct
        or a.rho is not None
        or a.rho_cluster
    ):
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            text = _quick_fit_text(a)
    except Exception:  # noqa: BLE001 -- the careful path gives the message
        return None
    return None if caught else text


def _quick_fit_text(a) -> str | None:
    import numpy as np

    from mlmeta.io.light import ids, numbers, quick_model_data, read_plain_csv
    from mlmeta.model import fit_prepared
    from mlmeta.spec import ModelSpec

    random = _random_arg(a.random)
    spec = ModelSpec.build(
        random=random,
        method=a.method,
        test=a.test,
        dfs=a.dfs,
        level=a.level,
        sigma2=_sigma2_arg(a.sigma2, random),
        measure=a.measure,
    )
    nesting = spec.nesting
    if spec.general or nesting is None:
        return None
    if a.measure:
        from mlmeta.effects import registry
        from mlmeta.effects.compute import check_arguments, compute_columns
        from mlmeta.effects.inputs import Col, Rows

        m = registry.get(a.measure)
        given = {x: getattr(a, x) for x in ESCALC_ARGS if getattr(a, x)}
        check_arguments(m, given)
        value_cols = list(dict.fromkeys(given.values()))
    else:
        if not a.yi or not a.vi:
            return None
        value_cols = list(dict.fromkeys([a.yi, a.vi]))
    cells = read_plain_csv(a.data, list(dict.fromkeys([*value_cols, *nesting])))
    if cells is None:
        return None
    values = {c: numbers(cells[c]) for c in value_cols}
    if any(v is None for v in values.values()):
        return None
    if a.measure:
        k = len(cells[value_cols[0]])
        cols = {x: Col(x, c, np.asarray(values[c])) for x, c in given.items()}
        y, v, keep, _ = compute_columns(m, cols, k, Rows(None))
        if not keep.all():
            return None
    else:
        y, v = np.asarray(values[a.yi]), np.asarray(values[a.vi])
    factors = []
    for c in nesting:
        f = ids(cells[c])
        if f is None:
            return None
        factors.append(f)
    md = quick_model_data(y, v, tuple(nesting), factors)
    if md is None:
        return None
    return fit_prepared(md, spec).summary()


def _random_arg(values):
    """--random given once (a nesting or a formula) or repeated (one term each)."""
    if not values:
        return None
    vals = [v.strip() for v in values if v.strip().lower() not in ("none", "")]
    if not vals:
        if len(values) > 1:
            raise MlmetaError("--random none cannot be combined with other --random terms")
        return None
    if len(vals) != len(values):
        raise MlmetaError("--random none cannot be combined with other --random terms")
    if len(vals) == 1:
        return vals[0]
    return [v if "|" in v else f"~ 1 | {v}" for v in vals]


def _structure_args(a) -> dict:
    """--struct, --R, --V, --rho, --rho-cluster as rma_mv arguments (files read here)."""
    from mlmeta.io.structures import read_R_csv, read_V_csv

    out: dict = {}
    if a.struct:
        out["struct"] = [s.strip() for s in a.struct.split(",") if s.strip()]
    if a.R:
        R = {}
        for item in a.R:
            if "=" not in item:
                raise MlmetaError(
                    f"--R expects FACTOR=PATH (e.g. --R phylo=tree_cor.csv); got {item!r}"
                )
            fac, path = (x.strip() for x in item.split("=", 1))
            if not fac or not path:
                raise MlmetaError(f"--R expects FACTOR=PATH; got {item!r}")
            if fac in R:
                raise MlmetaError(f"--R: factor {fac!r} is given twice")
            R[fac] = read_R_csv(path, fac)
        out["R"] = R
    if a.V:
        out["V"] = read_V_csv(a.V)
    if a.rho is not None:
        out["rho"] = a.rho
    if a.rho_cluster:
        out["rho_cluster"] = a.rho_cluster
    return out


def _sigma2_arg(text, random):
    """'NA,0' -> [None, 0.0]; the count must match the levels of --random."""
    if text is None:
        return None
    from mlmeta.spec import parse_random

    n = sum(len(t.outer) for t in parse_random(random) if t.nested)
    out = []
    for tok in text.split(","):
        t = tok.strip()
        if t.upper() in ("NA", "NONE", ""):
            out.append(None)
            continue
        try:
            out.append(float(t))
        except ValueError:
            raise MlmetaError(f"--sigma2: {t!r} is not a number or NA") from None
    if len(out) != n:
        raise MlmetaError(
            f"--sigma2 has {len(out)} value(s) but the model has {n} random-effect "
            "levels (give one per level, outer to inner, NA to estimate)"
        )
    return out


def _blocks(s: str) -> tuple[str, ...]:
    out = tuple(b.strip() for b in s.split(",") if b.strip())
    for b in out:
        if b not in BLOCKS:
            raise MlmetaError(f"--with: unknown block {b!r}; choose from {', '.join(BLOCKS)}")
    return out


def _clean(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _run(argv) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.version:
        from mlmeta import __version__

        print(__version__)
        return 0
    if a.cmd == "fit":
        blocks = _blocks(a.with_)
        if blocks and not a.json:
            raise MlmetaError(
                "--with adds blocks to the JSON output: add --json (the text "
                "summary has no place for them)"
            )
        text = None if a.json else _quick_summary(a)
        if text is not None:
            sys.stdout.write(_safe(text))
            return 0
        res = _fit_from_args(a)
        if a.json:
            print(json.dumps(_clean(res.to_dict(blocks))))
        else:
            sys.stdout.write(_safe(res.summary()))
        return 0
    if a.cmd in COMMANDS:
        return int(import_module(COMMANDS[a.cmd]).run(a))
    if a.cmd == "run":
        return _cmd_run(a)
    if a.cmd == "init":
        return _cmd_init(a)
    if a.cmd == "demo":
        from mlmeta.examples import load_example
        from mlmeta.model import rma_mv

        ex = load_example("alliance_like")
        print(f"Example: {ex.title}")
        print(ex.notice)
        print()
        res = rma_mv(
            ex.data,
            "yi",
            "vi",
            random="study/es",
            method="REML",
            test="t",
            dfs="contain",
            measure="ZCOR",
        )
        print(res.summary(), end="")
        return 0
    ap.print_help()
    cmds = ", ".join(["fit", "run", "init", "demo", *COMMANDS])
    raise MlmetaError(f"no command given; choose one of {cmds}")


_CONTROL = dict.fromkeys([*range(0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)])


def _safe(text: str) -> str:
    """Text from the data made harmless for a terminal: control characters other than newline
    and tab (escape sequences among them) are shown as ``\\xNN``."""
    if not any(ord(ch) in _CONTROL for ch in text):
        return text
    return "".join(f"\\x{ord(ch):02x}" if ord(ch) in _CONTROL else ch for ch in text)


def _echo(text: str, file=None) -> None:
    """Print (control characters escaped), replacing the typographic minus when the stream
    cannot encode it."""
    stream = sys.stdout if file is None else file
    text = _safe(text)
    enc = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(enc)
    except (UnicodeEncodeError, LookupError):
        text = text.replace("\u2212", "-").encode(enc, "replace").decode(enc)
    print(text, file=stream)


def _cmd_run(a) -> int:
    from mlmeta.io.analysis import load_analysis
    from mlmeta.report import run_report
    from mlmeta.report.progress import Progress

    spec = load_analysis(a.analysis)
    progress = Progress(enabled=False) if a.quiet else Progress()
    out = run_report(spec, a.out, progress=progress, command=f"mlmeta run {a.analysis}")
    n = out.numbers
    html = out.out_dir / "report.html"
    if a.quiet:
        _echo(str(html))
        return 0
    where: dict[str, list[str]] = {}  # one line per message, naming where it arose
    for w in n.get("warnings", []):
        sections = where.setdefault(w["message"], [])
        if w["section"] not in sections:
            sections.append(w["section"])
    for msg, sections in where.items():
        _echo(f"mlmeta: warning: {msg} ({', '.join(sections)})", file=sys.stderr)
    _echo(n["title"])
    if n.get("simulated"):
        _echo("SIMULATED DATA: not results of real studies.")
    _echo(n["overall"]["apa"])
    _echo(f"Report: {html}  ({out.seconds:.1f} s; also report.md, results.json, figures/)")
    return 0


def _cmd_init(a) -> int:
    from mlmeta.io.analysis import init_template

    if a.output and os.path.exists(a.output) and not a.force:
        raise MlmetaError(f"{a.output!r} exists; use --force to overwrite it")
    text = init_template(a.data, a.output)
    if a.output:
        Path(a.output).write_text(text, encoding="utf-8")
        _echo(f"wrote {a.output}; edit it, then: mlmeta run {a.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C (temporary files are removed on the way)
    and exit with 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second one must not cut
        signal.signal(sig, signal.SIG_IGN)  # the clean-up short
    raise Terminated(signum)


def _install_signals() -> dict:
    import signal

    old = {signal.SIGINT: signal.getsignal(signal.SIGINT)}  # _on_signal ignores it
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            old[sig] = signal.signal(sig, _on_signal)
        except (ValueError, OSError):  # not the main thread
            pass
    return old


def _restore_signals(old: dict) -> None:
    import signal

    for sig, handler in old.items():
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError, TypeError):
            pass


def _user_message(exc: BaseException) -> str | None:
    """The one line for a failure the user's input or machine can cause (exit 2), or None for
    a genuine internal error (exit 1)."""

    def first(e) -> str:
        return str(e).splitlines()[0].strip() if str(e).strip() else type(e).__name__

    if isinstance(exc, MlmetaError):
        msg = first(exc)
        while msg.startswith("mlmeta: "):  # never "mlmeta: error: mlmeta: ..."
            msg = msg[len("mlmeta: ") :].removeprefix("error: ")
        return msg
    if isinstance(exc, RecursionError):
        return (
            "the input is nested too deeply to process (maximum recursion depth "
            "exceeded); simplify it"
        )
    if isinstance(exc, MemoryError):
        return (
            "not enough memory for this input; use a smaller data file or fewer "
            "moderators or analyses"
        )
    if isinstance(exc, OSError):
        what = exc.strerror or first(exc)
        where = f": {exc.filename!s}" if getattr(exc, "filename", None) else ""
        return f"{what}{where}"
    if type(exc).__name__ == "LinAlgError":  # numpy.linalg, not imported on the fast path
        return (
            f"a matrix of this model is singular or not positive definite ({first(exc)}); "
            "check for constant, duplicated or collinear columns and equal effect sizes"
        )
    return None


#: BLAS threads of the command line unless the user sets them: mlmeta's matrices are small
#: (p x p, per-cluster blocks), so BLAS threads add start-up and contention (and oversubscribe
#: the cores next to the report's figure workers) rather than speed
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def main(argv=None) -> int:
    if "numpy" not in sys.modules:  # read by the BLAS library when numpy loads it
        for var in BLAS_THREAD_VARS:
            os.environ.setdefault(var, "1")
    debug = bool(os.environ.get("MLMETA_DEBUG"))

    held: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None):
        # held back and printed only when the command succeeds: a refused input gets exactly
        # one line on stderr, its error. Only mlmeta's own warnings reach the user; numpy's
        # (overflow, invalid value) are for MLMETA_DEBUG=1.
        if not (issubclass(category, MlmetaWarning) or debug):
            return
        first = str(message).splitlines()[0] if str(message) else category.__name__
        if first not in held:
            held.append(first)

    old_signals = _install_signals()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", MlmetaWarning)
            warnings.showwarning = show
            try:
                code = _run(sys.argv[1:] if argv is None else argv)
            except KeyboardInterrupt:
                _echo("mlmeta: interrupted", file=sys.stderr)
                code = 130
            except Terminated as exc:
                _echo(f"mlmeta: stopped by signal {exc.signum}", file=sys.stderr)
                code = 128 + exc.signum
            except BrokenPipeError:
                code = _closed_stdout()
            except Exception as exc:
                if debug:
                    raise
                msg = _user_message(exc)
                if msg is not None:
                    _echo(f"mlmeta: error: {msg}", file=sys.stderr)
                    code = 2
                else:  # last resort: one line, no traceback
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    _echo(
                        f"mlmeta: internal error ({type(exc).__name__}: {first}); "
                        "rerun with MLMETA_DEBUG=1 for details",
                        file=sys.stderr,
                    )
                    code = 1
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            code = _closed_stdout()
        except OSError as exc:  # e.g. a full disk behind a redirected stdout
            _echo(f"mlmeta: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
            code = 2
        if code == 0:
            for w in held:
                _echo(f"mlmeta: warning: {w}", file=sys.stderr)
    finally:
        _restore_signals(old_signals)
    return code


def _closed_stdout() -> int:
    """The reader of stdout went away (``mlmeta fit ... --json | head -c 10``): end quietly.
    stdout is pointed at /dev/null so that the interpreter's final flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
