"""Writing tables and figures, the same way for every report.

A table is written as CSV, Markdown (caption above, footnote below), a LaTeX booktabs table and a
small HTML page for Snakemake's report, every format showing the same rounded numbers; a figure as
each configured format (PNG, PDF, ...) with no timestamp in its metadata, so an identical report is
identical byte for byte. Every file is written atomically. Figures use matplotlib's Agg canvas on
`Figure` objects rather than pyplot, so importing this module does not switch the backend of an
interactive session and no figure is left open in pyplot's registry; matplotlib is imported only
when a figure is made, so modules that write tables alone (and the Snakefile that imports them)
stay quick to load.

Also the text helpers the tables share: numbers and intervals at a table's precision, settings,
MACs units and search windows.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .errors import ConfigError
from .io import atomic_path, write_text
from .units import format_macs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MACS_CONVENTION = (
    "MACs are counted as timm / torch.utils.flop_counter count them: FLOPs/2 of conv and matmul ops, "
    "including QK^T and A·V; LayerNorm, softmax and GELU are not counted."
)

# Timestamps in PDF/SVG metadata would make identical reports differ byte for byte.
_STABLE_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


# ---------------------------------------------------------------------------------------- cell text

def number(x) -> float:
    """A JSON number as float; null (a strict JSON writer's NaN) as NaN."""
    return float("nan") if x is None else float(x)


def ci_text(ci, digits: int) -> str:
    """A 95 % interval as "[lo, hi]" at the table's precision; n/a when it is undefined."""
    lo, hi = (number(v) for v in (ci if ci is not None else (None, None)))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def setting_text(value) -> str:
    """A switch or setting as table text, the same in every format: yes/no, numbers as %g."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def macs_unit(largest: float) -> tuple[str, float]:
    """One unit per table or axis, chosen by its largest value."""
    return ("G", 1e9) if largest >= 1e9 else ("M", 1e6)


def format_window(lo: float, hi: float) -> str:
    return f"[{format_macs(lo)}, {format_macs(hi)}]"


def search_windows(histories: pd.DataFrame) -> dict[str, str]:
    """Per budget, its search window in MACs as text, from the histories' window_lo/window_hi
    (several distinct windows, e.g. seeds run with different configs, are all listed)."""
    pairs = histories[["budget", "window_lo", "window_hi"]].drop_duplicates()
    return {budget: "; ".join(format_window(lo, hi) for lo, hi in zip(g["window_lo"], g["window_hi"]))
            for budget, g in pairs.groupby("budget", sort=False)}


def float_decimals(df: pd.DataFrame, digits: int = 2, **overrides: int) -> dict[str, int]:
    """`digits` for every float column, except the columns named in `overrides`."""
    return {c: overrides.get(c, digits) for c in df.columns if df[c].dtype.kind == "f"}


# ---------------------------------------------------------------------------------------- tables

def _latex_escape(text: str) -> str:
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "·": r"$\cdot$", "±": r"$\pm$"}  # need TS1 under pdflatex; math mode works everywhere
    return "".join(specials.get(ch, ch) for ch in text)


_HTML_STYLE = ("body{font-family:sans-serif;font-size:13px;margin:12px}p{max-width:70em}"
               "table{border-collapse:collapse}th,td{padding:3px 8px;text-align:left;vertical-align:top}"
               "thead th{border-bottom:2px solid #333}tbody tr{border-bottom:1px solid #ddd}"
               "tbody tr:last-child{border-bottom:2px solid #333}")


def _html_page(df: pd.DataFrame, title: str, caption: str, footnote: str, specs: dict[str, str]) -> str:
    """A table as a small self-contained HTML page: caption, the table with the same number formats
    as the Markdown, footnote."""
    formatters = {c: (lambda x, spec=spec: "n/a" if pd.isna(x) else format(x, spec)) for c, spec in specs.items()}
    text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    numeric = "".join(f"td:nth-child({i + 1}){{text-align:right}}"
                      for i, c in enumerate(df.columns) if c not in text)
    df = df.assign(**{c: df[c].where(df[c].notna(), "n/a") for c in text})  # to_html prints None as "None"
    table = df.to_html(index=False, na_rep="n/a", border=0, formatters=formatters,
                       float_format=lambda x: f"{x:g}")
    notes = f"<p>{html.escape(footnote, quote=False)}</p>\n" if footnote else ""
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_HTML_STYLE}{numeric}</style></head>\n<body>\n<p>{html.escape(caption, quote=False)}</p>\n"
            f"{table}\n{notes}</body></html>\n")


def write_table(df: pd.DataFrame, stem: Path, caption: str, decimals: dict[str, int | str],
                footnote: str = "", latex: dict | None = None) -> None:
    """Write `df` as <stem>.csv, <stem>.md (caption line above, footnote below) and <stem>.tex.

    `decimals` gives the digits shown per float column; the CSV holds the same rounded values, so
    every format shows the same numbers. Also <stem>.html, the same table as a page for Snakemake's
    report (caption above, footnote below). A format spec instead of digits ("g", "+g") formats a column
    already rounded row by row. The LaTeX is a booktabs table (\\toprule, \\midrule, \\bottomrule);
    `latex` passes options to Styler.to_latex (e.g. environment="longtable", column_format)."""
    stem = Path(stem)
    decimals = {c: d for c, d in decimals.items() if c in df.columns}
    specs = {c: (f".{d}f" if isinstance(d, int) else d) for c, d in decimals.items()}
    df = df.round({c: d for c, d in decimals.items() if isinstance(d, int)})
    write_text(stem.with_suffix(".csv"), df.to_csv(index=False))

    # tabulate prints NaN as "nan"; only None becomes missingval.
    cells = df.astype(object).where(df.notna(), None)
    floatfmt = [specs.get(c, "g") for c in df.columns]
    text = [i for i, c in enumerate(df.columns) if not pd.api.types.is_numeric_dtype(df[c])]  # "82.0" stays
    md = cells.to_markdown(index=False, floatfmt=floatfmt, missingval="n/a",
                           disable_numparse=text if len(df) else True)  # no rows: tabulate sees no columns
    parts = [f"Table: {caption}", "", md, ""] + ([footnote, ""] if footnote else [])
    write_text(stem.with_suffix(".md"), "\n".join(parts))
    write_text(stem.with_suffix(".html"), _html_page(df, stem.name, caption, footnote, specs))

    tex_caption = _latex_escape(" ".join(filter(None, [caption, footnote])))
    options = {"position_float": "centering"} | (latex or {})
    if options.get("environment") == "longtable":
        options.pop("position_float")  # a longtable is not a float
    tex = (df.style.hide(axis="index")
           .format({c: f"{{:{spec}}}" for c, spec in specs.items()}, na_rep="--", escape="latex")
           .format_index(escape="latex", axis=1)
           .to_latex(caption=tex_caption, label=f"tab:{stem.name.replace('_', '-')}", hrules=True, **options))
    # A longtable repeats its caption on every page; there, "(continued)" is enough.
    tex = tex.replace(f"\\caption[]{{{tex_caption}}}", "\\caption[]{(continued)}")
    write_text(stem.with_suffix(".tex"), tex)


# ---------------------------------------------------------------------------------------- figures

def check_formats(formats) -> None:
    """Every figure format is one the Agg canvas writes (checked before anything is read)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    unknown = [f for f in formats if f not in supported]
    if unknown:
        raise ConfigError(f"figures.formats: {', '.join(unknown)} not supported; "
                          f"choose from {', '.join(sorted(supported))}")


def new_figure(**kwargs) -> Figure:
    """A matplotlib Figure on its own Agg canvas: no pyplot, no GUI backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, stem: Path, formats, dpi: int) -> None:
    """Write `fig` as <stem>.<fmt> for each format, each file atomically."""
    stem = Path(stem)
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight",
                        metadata=_STABLE_METADATA.get(fmt))
