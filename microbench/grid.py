"""What to run: value lists and ranges, the named shape flags, ``--set``, sweep files and the op's grids.

Value syntax (one field):  ``1024,4096`` (a list), ``1k:128k:x2`` (geometric: 1024, 2048, … 131072),
``128:1024:+128`` (arithmetic), ``4K`` (k / K = 1024); parts combine: ``1k,3k:12k:x2``. Booleans take
``true/false/yes/no/1/0/on/off``; strings are kept as written. A range includes its end when a step lands on it.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..kernels.op import Op, ShapeError, dtype_name

# Named bench flags -> the op fields they may stand for, first match wins. An int field only: Mamba-2's
# selective_state_update has a bool `heads` (layout switch) next to its int `nheads`.
FLAG_FIELDS: dict[str, tuple[str, ...]] = {
    "batch": ("batch",),
    "dim": ("dim",),
    "dstate": ("dstate",),
    "heads": ("heads", "nheads"),
    "headdim": ("headdim", "head_dim"),
    "seqlen": ("seqlen",),
}
# `--grid quick` is the op's small (CPU-sized) grid.
GRID_ALIASES = {"quick": "small"}
_INT = re.compile(r"^\s*(\d+)\s*([kK]?)\s*$")
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}
MAX_VALUES = 10_000


class GridError(ValueError):
    """A malformed value list, range, flag or sweep file (the message says which and why)."""


def parse_int(text: str) -> int:
    """``"4096"`` -> 4096, ``"4k"`` / ``"4K"`` -> 4096."""
    m = _INT.match(text)
    if not m:
        raise GridError(f"not an integer: {text!r} (use digits with an optional k/K = 1024 suffix)")
    return int(m.group(1)) * (1024 if m.group(2) else 1)


def parse_range(text: str) -> list[int]:
    """``start:stop:xF`` (geometric) or ``start:stop:+S`` (arithmetic), both ends inclusive when hit."""
    parts = text.split(":")
    if len(parts) != 3:
        raise GridError(f"range {text!r} must be start:stop:xFACTOR or start:stop:+STEP")
    start, stop, step = parse_int(parts[0]), parse_int(parts[1]), parts[2].strip()
    if stop < start:
        raise GridError(f"range {text!r}: stop {stop} is below start {start}")
    if step[:1] in ("x", "*"):
        factor = parse_int(step[1:])
        if factor < 2:
            raise GridError(f"range {text!r}: a geometric factor must be >= 2, got {factor}")
        if start < 1:
            raise GridError(f"range {text!r}: a geometric range must start at >= 1")
        values, v = [], start
        while v <= stop:
            values.append(v)
            v *= factor
    elif step[:1] == "+":
        inc = parse_int(step[1:])
        if inc < 1:
            raise GridError(f"range {text!r}: an arithmetic step must be >= 1, got {inc}")
        if (stop - start) // inc + 1 > MAX_VALUES:
            raise GridError(f"range {text!r} has more than {MAX_VALUES} values")
        values = list(range(start, stop + 1, inc))
    else:
        raise GridError(f"range {text!r}: the step must be xFACTOR (geometric) or +STEP (arithmetic), got {step!r}")
    return values


def parse_values(text: str | int | Sequence[Any], kind: type = int) -> list[Any]:
    """A flag's value as a list: ``"1k:4k:x2,6k"`` -> [1024, 2048, 4096, 6144] (duplicates dropped, order kept).

    kind: int (lists and ranges), bool or str (lists only). A list or a bare value (from YAML) is accepted too.
    """
    if isinstance(text, (list, tuple)):
        items = [x for item in text for x in parse_values(item, kind)]
    elif isinstance(text, bool) or (isinstance(text, int) and kind is not bool):
        items = [text if kind is not bool else bool(text)]
    elif isinstance(text, int):
        items = [bool(text)]
    else:
        items = []
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                raise GridError(f"empty item in {text!r}")
            items.extend(_parse_item(part, kind))
    return list(dict.fromkeys(items))


def parse_scalar(text: str) -> int | bool | str:
    """One value whose kind is not known in advance (a kernel's tuning knob): true/false, an integer
    (``16k`` allowed), else the text."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return parse_int(text) if text[:1].isdigit() else text


def _parse_item(part: str, kind: type) -> list[Any]:
    if kind is bool:
        low = part.lower()
        if low in _TRUE | _FALSE:
            return [low in _TRUE]
        raise GridError(f"not a boolean: {part!r} (use true/false)")
    if kind is int:
        return parse_range(part) if ":" in part else [parse_int(part)]
    if kind is float:
        try:
            return [float(part)]
        except ValueError:
            raise GridError(f"not a number: {part!r}") from None
    return [part]


# --------------------------------------------------------------------------------------------------
# Fields of an op
# --------------------------------------------------------------------------------------------------
def field_kinds(op: Op) -> dict[str, type]:
    """Shape field -> int | bool | float | str, from the dataclass defaults (annotations are strings)."""
    kinds = {}
    for f in dataclasses.fields(op.shape_type):
        default = f.default
        kinds[f.name] = type(default) if isinstance(default, (bool, int, float, str)) else str
    return kinds


def resolve_flag(op: Op, flag: str) -> str:
    """The op field a named flag (``--heads``) stands for; a :class:`GridError` naming the op's fields."""
    kinds = field_kinds(op)
    for name in FLAG_FIELDS.get(flag, (flag,)):
        if kinds.get(name) is int:
            return name
    raise GridError(f"--{flag} does not apply to {op.name}: its shape fields are "
                    f"{', '.join(op.shape_type.field_names())} (sweep any of them with --set FIELD=VALUES)")


def sweep_fields(op: Op, flags: Mapping[str, str | None], sets: Iterable[str] = ()) -> dict[str, list[Any]]:
    """Named flags (``{"seqlen": "1k:4k:x2"}``, None = not given) and ``--set field=values`` -> field -> values.

    ``dtype`` may be set too. A field given twice is an error.
    """
    out: dict[str, list[Any]] = {}
    kinds = {**field_kinds(op), "dtype": str}

    def add(name: str, raw: Any, origin: str) -> None:
        if name in out:
            raise GridError(f"{op.name}: field {name!r} is given twice ({origin})")
        values = parse_values(raw, kinds[name])
        out[name] = [dtype_name(v) for v in values] if name == "dtype" else values

    for flag, raw in flags.items():
        if raw is not None:
            add(resolve_flag(op, flag), raw, f"--{flag}")
    for item in sets:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not raw.strip():
            raise GridError(f"--set {item!r}: expected FIELD=VALUES, e.g. seqlen=1k:64k:x2")
        if name not in kinds:
            raise GridError(f"--set {item!r}: {op.name} has no field {name!r}; fields are "
                            f"{', '.join(op.shape_type.field_names())}, dtype")
        add(name, raw, "--set")
    return out


def product(fields: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of field -> values, the first field varying slowest."""
    names = list(fields)
    return [dict(zip(names, combo)) for combo in itertools.product(*(fields[n] for n in names))]


def grid_name(name: str) -> str:
    return GRID_ALIASES.get(name, name)


def build_configs(op: Op, *, grid: str | None = None, fields: Mapping[str, Sequence[Any]] | None = None,
                  configs: Sequence[Mapping[str, Any]] = (), where: str | None = None,
                  limit: int | None = None) -> list[dict[str, Any]]:
    """The configs of one op, each a dict of shape fields plus ``dtype``.

    * no fields: the named grid (default ``paper``), or the explicit ``configs``;
    * fields and no grid: their product, other fields at the shape's defaults, dtype bf16 unless given;
    * fields and a grid: every grid config with those fields replaced (duplicates dropped).
    ``where`` (``"dtype=bf16,channel_last=True"``) keeps the matching configs; ``limit`` the first N.
    """
    fields = dict(fields or {})
    if configs and not fields and grid is None:
        base = [dict(c) for c in configs]
    elif fields and grid is None and not configs:
        base = [{"dtype": "bf16", **c} for c in product(fields)]
    else:
        base = [dict(c) for c in configs] + (op.grid(grid_name(grid or "paper")) if grid or not configs else [])
        base = [{**c, **o} for c in base for o in (product(fields) if fields else [{}])]
    unique = {}
    for config in base:
        config.setdefault("dtype", "bf16")
        unique.setdefault(_key(config), config)
    chosen = filter_configs(op, list(unique.values()), where)
    return chosen[:limit] if limit is not None else chosen


def _key(config: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in config.items()))


def filter_configs(op: Op, configs: list[dict[str, Any]], where: str | None) -> list[dict[str, Any]]:
    """Configs whose shape fields (defaults included) and dtype equal every ``key=value`` of ``where``.
    A config that is not a valid shape is kept (its rows say ``unsupported``) unless it fails the filter."""
    if not where:
        return configs
    wanted = {}
    for item in where.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise GridError(f"--where {where!r}: expected FIELD=VALUE[,FIELD=VALUE…]")
        wanted[key.strip()] = value.strip()
    kept = []
    for config in configs:
        try:
            shape, dtype = op.split_config(config)
            full = {**shape.params(), "dtype": dtype}
        except ShapeError:
            full = dict(config)
        if all(str(full.get(k)) == v for k, v in wanted.items()):
            kept.append(config)
    return kept


# --------------------------------------------------------------------------------------------------
# Sweep files
# --------------------------------------------------------------------------------------------------
def load_sweep_file(path: str | Path) -> dict[str, Any]:
    """A YAML sweep file -> ``{"ops": {op: {"impl", "grid", "set", "configs", "where", "limit"}}, "timing": {…}}``.

    Example::

        ops:
          causal_conv1d:
            impl: [triton, official]       # default: every impl but the reference
            set: {seqlen: 1k:64k:x2, dim: [1536, 4096], dtype: bf16}
          selective_scan:
            grid: paper
            where: dstate=16
        timing: {cache: cold, budget_s: 1.0, cv_target: 0.02}
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise GridError(f"cannot read sweep file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("ops"), dict) or not data["ops"]:
        raise GridError(f"{path}: a sweep file needs an 'ops' mapping (op name -> impl/grid/set/configs)")
    allowed_op = {"impl", "grid", "set", "configs", "where", "limit"}
    allowed_top = {"ops", "timing"}
    if set(data) - allowed_top:
        raise GridError(f"{path}: unknown top-level key(s) {', '.join(sorted(set(data) - allowed_top))}")
    for name, entry in data["ops"].items():
        entry = entry or {}
        if not isinstance(entry, dict) or set(entry) - allowed_op:
            raise GridError(f"{path}: ops.{name} may only have {', '.join(sorted(allowed_op))}")
        data["ops"][name] = entry
    return data


def configs_from_entry(op: Op, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One op's configs from its sweep-file entry (see :func:`load_sweep_file`)."""
    sets = entry.get("set") or {}
    if not isinstance(sets, dict):
        raise GridError(f"ops.{op.name}.set must map fields to values")
    fields = sweep_fields(op, {}, [f"{k}={_as_text(v)}" for k, v in sets.items()])
    return build_configs(op, grid=entry.get("grid"), fields=fields, configs=entry.get("configs") or (),
                         where=entry.get("where"), limit=entry.get("limit"))


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_as_text(v) for v in value)
    return str(value)
