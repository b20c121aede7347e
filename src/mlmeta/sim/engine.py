"""The simulation engine: conditions x replications, in chunks, on any executor, resumable.

A simulation study is a *design* (a table of conditions), a *generate* function that draws one
data set for a condition from a random generator, and an *analyse* function that turns a data
set into estimates. :func:`run` evaluates ``reps`` replications of every condition and returns
one table, sorted by condition and replication.

Random numbers
--------------
Every replication has its own generator, derived from ``seed`` by :class:`numpy.random.SeedSequence`
spawning: ``SeedSequence(seed)`` -> one child per condition (``spawn_key=(c,)``) -> one
grandchild per replication (``spawn_key=(c, r)``), exactly what ``SeedSequence(seed).spawn(C)[c]
.spawn(reps)[r]`` yields. Replications are grouped into chunks (condition x block of
``chunk_size`` replications) only to amortise task overhead; as the generator of a replication
does not depend on its chunk, the table is bit-identical whatever the executor, the number of
workers, the order in which chunks finish or the chunk size.

Checkpoints
-----------
With ``checkpoint=DIR`` each finished chunk is written to ``DIR`` as one Parquet file (written to
a temporary file, then moved into place with :func:`os.replace`, so a file is either complete or
absent), and ``DIR/manifest.json`` records a hash of the design, ``reps``, ``seed``,
``chunk_size`` and the names of the two functions. A rerun with the same arguments reads the
finished chunks and computes only the missing ones; the final table is the same as that of an
uninterrupted run. A folder written by a different simulation is refused.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib.util
import json
import math
import os
import pickle
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlmeta.errors import InputError

__all__ = ["conditions_of", "replication_rng", "run"]

MANIFEST = "manifest.json"
_FORMAT = 1


# --------------------------------------------------------------------------------------------
# design and seeds
# --------------------------------------------------------------------------------------------


def _plain(x: Any) -> Any:
    """A design value as a plain Python object (numpy scalars and arrays converted)."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return [_plain(v) for v in x.tolist()]
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    return x


def conditions_of(design: Any) -> list[dict[str, Any]]:
    """The conditions of a design (DataFrame or sequence of dicts) as a list of plain dicts."""
    if isinstance(design, pd.DataFrame):
        records = design.to_dict(orient="records")
    elif isinstance(design, Mapping):
        raise InputError(
            "design must be a DataFrame or a list of dicts (one per condition); "
            "got a single dict: wrap it in a list"
        )
    elif isinstance(design, Iterable) and not isinstance(design, (str, bytes)):
        records = list(design)
    else:
        raise InputError(
            f"design must be a DataFrame or a list of dicts (one per condition); "
            f"got {type(design).__name__}"
        )
    if not records:
        raise InputError("design has no conditions")
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise InputError(
                f"design: condition {i} must be a dict of parameters; got {type(rec).__name__}"
            )
        out.append({str(k): _plain(v) for k, v in rec.items()})
    return out


def replication_rng(seed: int, condition: int, rep: int) -> np.random.Generator:
    """The generator of replication ``rep`` of condition ``condition`` (0-based).

    ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(condition, rep)))``, i.e. the
    ``rep``-th child of the ``condition``-th child of ``SeedSequence(seed)``.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(condition, rep)))


def _fn_name(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _manifest(
    conds: list[dict], reps: int, seed: int, chunk_size: int, generate: Callable, analyse: Callable
) -> dict[str, Any]:
    body = {
        "format": _FORMAT,
        "design": conds,
        "reps": reps,
        "seed": seed,
        "chunk_size": chunk_size,
        "generate": _fn_name(generate),
        "analyse": _fn_name(analyse),
    }
    text = json.dumps(body, sort_keys=True, default=repr, separators=(",", ":"))
    return {"hash": hashlib.sha256(text.encode()).hexdigest(), **body}


# --------------------------------------------------------------------------------------------
# one chunk (runs in a worker)
# --------------------------------------------------------------------------------------------


def _as_frame(out: Any, where: str) -> pd.DataFrame:
    if isinstance(out, pd.DataFrame):
        return out.reset_index(drop=True)
    if isinstance(out, Mapping):
        return pd.DataFrame([dict(out)])
    if isinstance(out, pd.Series):
        return out.to_frame().T.reset_index(drop=True)
    raise InputError(
        f"analyse must return a dict or a DataFrame of estimates; got "
        f"{type(out).__name__} ({where})"
    )


def run_chunk(
    generate: Callable,
    analyse: Callable,
    condition: dict,
    cond_index: int,
    rep_start: int,
    rep_stop: int,
    seed: int,
) -> pd.DataFrame:
    """Replications ``rep_start .. rep_stop - 1`` of one condition: a frame with columns
    ``condition``, ``rep`` and the analysis output (several rows per replication when
    ``analyse`` returns a DataFrame)."""
    frames = []
    for r in range(rep_start, rep_stop):
        rng = replication_rng(seed, cond_index, r)
        data = generate(condition, rng)
        out = _as_frame(analyse(data, condition), f"condition {cond_index}, replication {r}")
        out.insert(0, "rep", r)
        out.insert(0, "condition", cond_index)
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------


class _Progress:
    """A one-line progress bar on stderr (``\\r``-refreshed, at most every 0.2 s)."""

    def __init__(self, total: int, done: int, enabled: bool, stream=None, width: int = 30):
        self.total, self.done, self.enabled = total, done, enabled and total > 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.t0 = time.monotonic()
        self.start_done = done
        self.last = 0.0
        self.drawn = -1
        self._draw(force=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        self._draw(force=self.done >= self.total)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if (not force and now - self.last < 0.2) or self.drawn == self.done:
            return
        self.last, self.drawn = now, self.done
        frac = self.done / self.total
        fill = round(self.width * frac)
        el = now - self.t0
        new = self.done - self.start_done
        eta = el / new * (self.total - self.done) if new else float("nan")
        eta_s = "--:--" if math.isnan(eta) else _mmss(eta)
        self.stream.write(
            f"\r[{'#' * fill}{'.' * (self.width - fill)}] {self.done}/"
            f"{self.total} chunks {100 * frac:3.0f}%  elapsed {_mmss(el)}  "
            f"eta {eta_s} "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()


def _mmss(s: float) -> str:
    s = round(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


# --------------------------------------------------------------------------------------------
# checkpoint folder
# --------------------------------------------------------------------------------------------


def _chunk_file(folder: Path, c: int, start: int, stop: int) -> Path:
    return folder / f"chunk-c{c:06d}-r{start:09d}-{stop:09d}.parquet"


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _open_checkpoint(folder: Path, manifest: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    mpath = folder / MANIFEST
    if mpath.exists():
        try:
            old = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if old.get("hash") != manifest["hash"]:
            raise InputError(
                f"checkpoint folder {str(folder)!r} holds a different simulation "
                "(design, reps, seed, chunk_size or functions differ); use a new "
                "folder or delete it"
            )
    else:
        if any(folder.glob("chunk-*.parquet")):
            raise InputError(
                f"checkpoint folder {str(folder)!r} has chunk files but no "
                f"{MANIFEST}; use a new folder or delete it"
            )
        text = json.dumps(manifest, indent=1, default=repr)

        def write(p: Path) -> None:
            p.write_text(text, encoding="utf-8")

        _write_atomic(mpath, write)
    for stale in folder.glob(".tmp-*"):  # left by a run that was killed mid-write
        try:
            stale.unlink()
        except OSError:
            pass


def _parquet_engine() -> None:
    if importlib.util.find_spec("pyarrow") is None:
        raise InputError(
            "checkpoint= writes Parquet files and needs pyarrow: pip install 'mlmeta[sim]'"
        )


# --------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------


def _check_picklable(name: str, fn: Callable) -> None:
    try:
        pickle.dumps(fn)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        raise InputError(
            f"{name} must be picklable to run on an executor: define it at module "
            f"level (not a lambda or nested function), or pass executor='serial'; "
            f"got {getattr(fn, '__qualname__', fn)!r} ({type(e).__name__})"
        ) from None


def _resolve_executor(executor: Any) -> tuple[cf.Executor | None, bool]:
    """(executor or None for serial, whether run() owns it and must shut it down)."""
    if executor is None:
        return cf.ProcessPoolExecutor(max_workers=os.cpu_count() or 1), True
    if isinstance(executor, str):
        if executor.lower() == "serial":
            return None, False
        raise InputError(
            f"executor must be 'serial', a concurrent.futures.Executor, a "
            f"dask.distributed Client or None; got {executor!r}"
        )
    if isinstance(executor, bool):
        raise InputError(
            f"executor must be 'serial', an Executor, a Client or None; got {executor!r}"
        )
    if isinstance(executor, int):
        if executor < 1:
            raise InputError(f"executor: a number of worker processes must be >= 1; got {executor}")
        return cf.ProcessPoolExecutor(max_workers=executor), True
    if isinstance(executor, cf.Executor):
        return executor, False
    get = getattr(executor, "get_executor", None)
    if callable(get):  # dask.distributed.Client (duck-typed: dask is imported only by the user)
        return get(pure=False), False
    raise InputError(
        f"executor must be 'serial', a concurrent.futures.Executor, a "
        f"dask.distributed Client or None; got {type(executor).__name__}"
    )


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def run(
    design: Any,
    generate: Callable,
    analyse: Callable,
    reps: int,
    seed: int,
    *,
    executor: Any = None,
    checkpoint: str | os.PathLike | None = None,
    chunk_size: int = 50,
    progress: bool = True,
) -> pd.DataFrame:
    """Run a simulation study: ``reps`` replications of every condition of ``design``.

    For condition ``c`` and replication ``r``::

        rng  = default_rng(SeedSequence(seed, spawn_key=(c, r)))
        data = generate(condition, rng)
        out  = analyse(data, condition)          # dict (one row) or DataFrame (rows)

    Parameters
    ----------
    design : DataFrame or sequence of dicts
        One row (dict) per condition; the values are passed to ``generate`` and ``analyse``
        and joined to the output table.
    generate, analyse : callables
        ``generate(condition, rng) -> data``; ``analyse(data, condition) -> dict or
        DataFrame``. On an executor they must be picklable (module-level functions).
    reps : int
        Replications per condition.
    seed : int
        Root of the seed tree (see the module docstring): the table depends only on
        ``design``, ``reps``, ``seed`` and the functions.
    executor : None, "serial", int, concurrent.futures.Executor or dask Client
        None: a :class:`~concurrent.futures.ProcessPoolExecutor` with one process per core
        (created and shut down here); "serial": in this process, in order; an int: a process
        pool of that many workers; an Executor: used as given (not shut down); a
        ``dask.distributed.Client``: its ``get_executor()`` (``pip install 'mlmeta[dask]'``).
    checkpoint : path, optional
        Folder of Parquet files, one per finished chunk, and a manifest; a rerun with the
        same arguments resumes (see the module docstring).
    chunk_size : int
        Replications per task (default 50).
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    DataFrame
        Columns ``condition`` (0-based index into the design), ``rep``, the design's parameters
        with scalar values, then the analysis output; sorted by condition and replication.

    Examples
    --------
    >>> from mlmeta import sim
    >>> design = [{"J": 20, "mu": 0.2, "tau": 0.2, "omega": 0.1, "rho": 0.5, "k": 4,
    ...            "sigma2": 0.04}]
    >>> res = sim.run(design, sim.generate_three_level, sim.analyse_che_rve, reps=100,
    ...               seed=1, executor="serial", progress=False)     # doctest: +SKIP
    """
    conds = conditions_of(design)
    reps = _check_int("reps", reps, 1)
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer; got {seed!r}")
    seed = int(seed)
    for name, fn in (("generate", generate), ("analyse", analyse)):
        if not callable(fn):
            raise InputError(f"{name} must be a function; got {type(fn).__name__}")

    chunks = [
        (c, s, min(s + chunk_size, reps))
        for c in range(len(conds))
        for s in range(0, reps, chunk_size)
    ]
    results: dict[tuple[int, int], pd.DataFrame] = {}
    folder = None
    if checkpoint is not None:
        _parquet_engine()
        folder = Path(checkpoint)
        _open_checkpoint(folder, _manifest(conds, reps, seed, chunk_size, generate, analyse))
        for c, s, e in chunks:
            f = _chunk_file(folder, c, s, e)
            if f.exists():
                results[(c, s)] = pd.read_parquet(f)
    todo = [ch for ch in chunks if (ch[0], ch[1]) not in results]

    def finish(c: int, s: int, e: int, frame: pd.DataFrame) -> None:
        if folder is not None:

            def write(p: Path) -> None:
                frame.to_parquet(p, index=False)

            _write_atomic(_chunk_file(folder, c, s, e), write)
            frame = pd.read_parquet(_chunk_file(folder, c, s, e))
        results[(c, s)] = frame

    bar = _Progress(len(chunks), len(chunks) - len(todo), progress)
    try:
        if todo:
            ex, owned = _resolve_executor(executor)
            if ex is None:
                for c, s, e in todo:
                    finish(c, s, e, run_chunk(generate, analyse, conds[c], c, s, e, seed))
                    bar.update()
            else:
                _check_picklable("generate", generate)
                _check_picklable("analyse", analyse)
                try:
                    futs = {
                        ex.submit(run_chunk, generate, analyse, conds[c], c, s, e, seed): (c, s, e)
                        for c, s, e in todo
                    }
                    try:
                        for fut in cf.as_completed(futs):
                            c, s, e = futs[fut]
                            finish(c, s, e, fut.result())
                            bar.update()
                    except BaseException:
                        for pending in futs:
                            pending.cancel()
                        raise
                finally:
                    if owned:
                        ex.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    return _assemble(conds, [results[(c, s)] for c, s, _ in chunks])


def _assemble(conds: list[dict], frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values(["condition", "rep"], kind="mergesort").reset_index(drop=True)
    keys: list[str] = []
    for cond in conds:
        keys += [k for k in cond if k not in keys]
    scalar = [k for k in keys if all(not isinstance(cd.get(k), (list, dict)) for cd in conds)]
    clash = [k for k in scalar if k in table.columns]
    if clash:
        raise InputError(
            f"analyse returned column(s) {', '.join(map(repr, clash))} with the "
            "name of a design parameter; rename them"
        )
    idx = table["condition"].to_numpy()
    for j, k in enumerate(scalar):
        vals = pd.Series([cd.get(k) for cd in conds])
        table.insert(2 + j, k, vals.to_numpy()[idx])
    return table
