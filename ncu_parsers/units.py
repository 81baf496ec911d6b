"""Nsight Compute values and units -> plain floats in ns, bytes, Hz, FLOPs (SI base units, no prefixes).

ncu prints ``"53,644,544"`` (thousands separators), ``"(!) n/a"`` for metrics it could not collect, and
units that depend on ``--print-units`` and on the page: ``byte``/``Kbyte``/``Mbyte``/``Gbyte`` (decimal
prefixes), ``ns``/``nsecond``/``usecond``/``msecond``, ``hz``/``Mhz``/``Ghz``, ``cycle/nsecond`` from the
Python report interface, and counts (``inst``, ``cycle``, ``sector``) or ``%`` that are kept as they are.
"""
from __future__ import annotations

import re
from functools import lru_cache

Value = float | str | None

# ncu scales with decimal SI prefixes (1 Kbyte = 1000 byte); the binary ones are accepted too.
_PREFIX = {"": 1.0, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "Ki": 2.0 ** 10, "Mi": 2.0 ** 20, "Gi": 2.0 ** 30, "Ti": 2.0 ** 40}
_TIME_NS = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6,
            "s": 1e9, "second": 1e9}
_FREQ_HZ = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
# Counted quantities that may carry an SI prefix when ncu auto-scales (``Mbyte``, ``Kinst``).
_COUNTS = ("byte", "inst", "cycle", "sector", "request", "warp", "thread", "block", "wavefront", "flop")
_NOT_AVAILABLE = {"", "n/a", "(!) n/a", "N/A", "nan"}
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?([eE][-+]?\d+)?")


def parse_number(text: str) -> Value:
    """``"53,644,544"`` -> 53644544.0, ``"1,436,018,299.46"`` -> float, ``"(!) n/a"`` -> None, a word
    (``"PolicySpread"``, ``"(384, 1, 1)"``) stays a string."""
    s = text.strip()
    if s in _NOT_AVAILABLE or s.startswith("(!)"):
        return None
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    try:
        return float(s)
    except ValueError:
        return text.strip()


@lru_cache(maxsize=None)
def unit_scale(unit: str) -> tuple[float, str]:
    """(factor, base unit) such that ``value * factor`` is in the base unit: ``"Mbyte"`` -> (1e6, "byte"),
    ``"usecond"`` -> (1e3, "ns"), ``"Ghz"`` -> (1e9, "Hz"), ``"cycle/nsecond"`` -> (1e9, "Hz"),
    ``"Gbyte/second"`` -> (1e9, "byte/s"); anything unknown -> (1.0, unit)."""
    u = unit.strip()
    if "/" not in u:
        return _simple(u)
    num, den = u.split("/", 1)
    f_num, b_num = _simple(num)
    if den in _TIME_NS:  # a rate: per second
        factor = f_num * 1e9 / _TIME_NS[den]
        return factor, "Hz" if b_num in ("cycle", "") else f"{b_num}/s"
    f_den, b_den = _simple(den)
    return f_num / f_den, f"{b_num}/{b_den}"


def _simple(u: str) -> tuple[float, str]:
    if u in _TIME_NS:
        return _TIME_NS[u], "ns"
    if u.lower() in _FREQ_HZ:
        return _FREQ_HZ[u.lower()], "Hz"
    for base in _COUNTS:
        if u.endswith(base) and u[: -len(base)] in _PREFIX:
            return _PREFIX[u[: -len(base)]], base
    return 1.0, u


def normalize(text: str | float | int | None, unit: str) -> tuple[Value, str]:
    """One ncu cell (text or a number from the report interface) and its unit -> (value in base unit, base
    unit). Non-numeric values come back unchanged with their unit."""
    if text is None:
        return None, unit
    value = float(text) if isinstance(text, (int, float)) and not isinstance(text, bool) else parse_number(str(text))
    if not isinstance(value, float):
        return value, unit
    factor, base = unit_scale(unit or "")
    return value * factor, base
