"""An :class:`AccountProblem` as canonical JSON, and back, bit for bit.

A rebalance run stores the exact inputs of its solve (DESIGN 3 and 5: "enough to reproduce it
exactly, plus its hash"), so a stored run can be re-solved later and give the same trades.
The encoding walks the dataclass fields generically: a numpy array becomes
``{"dtype": ..., "data": [...]}`` (floats are written with ``repr`` precision by the JSON
encoder, so they round-trip exactly), tuples of strings stay lists, ``substitutes`` (a dict of
int to int) becomes a list of pairs. :func:`problem_hash` is the SHA-256 of the canonical form
(sorted keys, no whitespace).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

import numpy as np

from portfolios.optimizer.errors import ProblemInvalid
from portfolios.optimizer.problem import AccountProblem, Lots, Mode, Securities

SNAPSHOT_VERSION = 1
MSG_SNAPSHOT_VERSION = "Stored inputs have format version {got}; this code reads version {want}."
MSG_SNAPSHOT_FIELD = "Stored inputs do not fit the optimizer: {error}."


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        data = value.tolist()
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            data = [None if (x is None or not math.isfinite(x)) else x for x in data]
        return {"dtype": value.dtype.str, "shape": list(value.shape), "data": data}
    if isinstance(value, dict):
        return {"pairs": sorted([int(k), int(v)] for k, v in value.items())}
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mode):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _group(obj: Any) -> dict[str, Any]:
    return {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def problem_to_json(problem: AccountProblem) -> dict[str, Any]:
    """The problem as a JSON-able dict (see the module docstring)."""
    out: dict[str, Any] = {"format": SNAPSHOT_VERSION}
    for f in dataclasses.fields(problem):
        value = getattr(problem, f.name)
        if f.name in ("securities", "lots"):
            out[f.name] = _group(value)
        else:
            out[f.name] = _encode(value)
    return out


def _decode_array(value: dict[str, Any]) -> np.ndarray:
    data = [np.nan if x is None else x for x in value["data"]] if value["data"] else []
    arr = np.array(data, dtype=np.dtype(value["dtype"]))
    return arr.reshape(value["shape"])


def _decode(value: Any, name: str) -> Any:
    if isinstance(value, dict) and "dtype" in value:
        return _decode_array(value)
    if isinstance(value, dict) and "pairs" in value:
        return {int(k): int(v) for k, v in value["pairs"]}
    if name == "symbols" and isinstance(value, list):
        return tuple(value)
    if name == "mode":
        return Mode(value)
    return value


def problem_from_json(data: dict[str, Any]) -> AccountProblem:
    """Rebuild the problem stored by :func:`problem_to_json`.

    Raises :class:`ProblemInvalid` when the stored format is unknown or a field does not fit.
    """
    if data.get("format") != SNAPSHOT_VERSION:
        raise ProblemInvalid(
            MSG_SNAPSHOT_VERSION.format(got=data.get("format"), want=SNAPSHOT_VERSION)
        )
    try:
        securities = Securities(**{k: _decode(v, k) for k, v in data["securities"].items()})
        lots = Lots(**{k: _decode(v, k) for k, v in data["lots"].items()})
        rest = {
            k: _decode(v, k) for k, v in data.items() if k not in ("format", "securities", "lots")
        }
        return AccountProblem(securities=securities, lots=lots, **rest)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProblemInvalid(MSG_SNAPSHOT_FIELD.format(error=exc)) from exc


def canonical_json(data: Any) -> str:
    """Sorted keys, no whitespace, no NaN: the form that is hashed."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def problem_hash(data: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a stored problem."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()
