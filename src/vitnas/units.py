"""MACs as text and back ('1.3G' <-> 1.3e9), the way budgets are named in configs, folder names
and tables. Pure and import-free, so every floor of the house may use it."""
from __future__ import annotations


def parse_macs(text) -> float:
    """'1.3G' -> 1.3e9, '850M' -> 8.5e8, '12K' -> 1.2e4; plain numbers pass through."""
    if isinstance(text, (int, float)):
        return float(text)
    units = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
    s = str(text).strip()
    if s and s[-1].upper() in units:
        return float(s[:-1]) * units[s[-1].upper()]
    return float(s)


def format_macs(macs: float) -> str:
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):  # T, P: training MACs
        if macs >= scale:
            return f"{macs / scale:.4g}{unit}"
    return f"{macs:.0f}"


def is_ms(text) -> bool:
    """Whether a budget is a latency ('0.8ms') rather than MACs ('2M')."""
    return str(text).strip().endswith("ms")


def parse_ms(text) -> float:
    """'0.8ms' -> 0.8 (milliseconds); plain numbers pass through."""
    s = str(text).strip()
    return float(s[:-2] if s.endswith("ms") else s)
