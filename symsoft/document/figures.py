"""The document's figures, drawn with matplotlib from the worked example, in memory.

Each figure is computed from the Bundle's worked example (never typed in), kept as plain data
(``FigureData``, which the tests read), and rendered twice: SVG text for the Markdown and PDF
bytes for pdflatex. Both are byte-for-byte deterministic: a fixed ``svg.hashsalt`` makes the
SVG ids stable, and the dates and tool names are left out of both files' metadata. No file is
written here; the writer stage writes what the emitters return.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib
import numpy
from matplotlib.backends.backend_pdf import FigureCanvasPdf
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from symsoft.derivation.bundle import WorkedExample
from symsoft.stamp import PLACEHOLDER

# the temperatures plotted, log-spaced from a near-argmax 0.1 to a near-uniform 10
TEMPERATURES = tuple(float(t) for t in numpy.geomspace(0.1, 10.0, 61))
MAX_CURVES = 5  # the temperature plot follows at most this many classes (the most probable)
MAX_HEATMAP = 12  # the heat map shows at most this many classes (the first ones)

_STYLE = {
    "svg.hashsalt": "symsoft",  # SVG ids from a fixed salt, not from random numbers
    "svg.fonttype": "path",  # glyphs as paths: the same picture without the fonts
    "font.family": "DejaVu Sans",  # shipped with matplotlib
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "path.simplify": False,  # every computed point is drawn (the tests read them back)
}
_SVG_METADATA = {"Date": None, "Creator": None}
_PDF_METADATA = {
    "CreationDate": None,
    "ModDate": None,
    "Producer": None,
    "Creator": None,
    # the stamp's placeholder (symsoft.stamp), filled in with the file's digest when it is
    # emitted, so that regenerating may replace a figure symsoft wrote without --force
    "Subject": f"a figure of the symsoft derivation document; do not edit; {PLACEHOLDER}",
}
_SIZE = (5.0, 2.8)  # inches: a text width at 11 pt


@dataclass(frozen=True)
class FigureData:
    """What a figure shows: numbers computed from the worked example."""

    key: str
    classes: tuple[int, ...]  # 0-based indices of the classes drawn
    names: tuple[str, ...]  # their legend or axis names
    x: tuple[float, ...]  # temperatures, or class positions
    values: tuple[tuple[float, ...], ...]  # one row per curve or matrix row; one row of bars


@dataclass(frozen=True)
class RenderedFigure:
    data: FigureData
    svg: str
    pdf: bytes


def _name(worked: WorkedExample, n: int) -> str:
    """A class's label if the plot's font has its letters, else s_n (e.g. Chinese labels)."""
    label = worked.labels[n]
    return label if label.isascii() else f"$s_{{{n + 1}}}$"


def temperature_data(worked: WorkedExample) -> FigureData:
    """s(z / T) for the most probable classes, at each temperature T."""
    k = len(worked.logits)
    order = sorted(range(k), key=lambda n: -worked.probabilities[n])[:MAX_CURVES]
    classes = tuple(sorted(order))
    z = numpy.asarray(worked.logits, dtype=numpy.float64)
    scaled = z[None, :] / numpy.asarray(TEMPERATURES)[:, None]
    e = numpy.exp(scaled - scaled.max(axis=1, keepdims=True))  # the stable form
    s = e / e.sum(axis=1, keepdims=True)
    rows = [[float(s[t, n]) for t in range(len(TEMPERATURES))] for n in classes]
    return FigureData(
        "temperature",
        classes,
        tuple(_name(worked, n) for n in classes),
        TEMPERATURES,
        tuple(tuple(row) for row in rows),
    )


def probability_data(worked: WorkedExample) -> FigureData:
    k = len(worked.logits)
    classes = tuple(range(k))
    return FigureData(
        "probabilities",
        classes,
        tuple(_name(worked, n) for n in classes),
        tuple(float(n + 1) for n in classes),
        (tuple(worked.probabilities),),
    )


def jacobian_data(worked: WorkedExample) -> FigureData:
    """J = diag(s) - s s^T at the example, for the first MAX_HEATMAP classes."""
    k = len(worked.logits)
    classes = tuple(range(min(k, MAX_HEATMAP)))
    p = worked.probabilities
    rows = tuple(tuple(p[a] * (float(a == b) - p[b]) for b in classes) for a in classes)
    return FigureData(
        "jacobian",
        classes,
        tuple(_name(worked, n) for n in classes),
        tuple(float(n + 1) for n in classes),
        rows,
    )


def _top(values: tuple[tuple[float, ...], ...]) -> float:
    """The y axis ends at 1 for probabilities that reach it, closer above small ones."""
    largest = max(max(row) for row in values)
    return 1.0 if largest > 0.5 else 1.15 * largest


def _temperature(fig: Figure, data: FigureData) -> None:
    ax = fig.add_subplot()
    for n, (name, row) in enumerate(zip(data.names, data.values, strict=True)):
        (line,) = ax.plot(data.x, row, label=name, linewidth=1.5)
        line.set_gid(f"curve_{n + 1}")  # the tests find each curve by this id
    ax.set_xscale("log")
    ax.axvline(1.0, color="0.6", linewidth=0.8, linestyle="--")
    ax.set_xlabel("$T$")
    ax.set_ylabel("$s_i(z / T)$")
    ax.set_ylim(0.0, _top(data.values))
    ax.legend(frameon=False, fontsize=8)


def _probabilities(fig: Figure, data: FigureData) -> None:
    ax = fig.add_subplot()
    (heights,) = data.values
    if len(data.x) <= MAX_HEATMAP:
        bars = ax.bar(data.x, heights, color="#3b6ea8", width=0.7)
        for n, bar in enumerate(bars):
            bar.set_gid(f"bar_{n + 1}")  # the tests find each bar by this id
    else:  # one line per class, drawn as a single collection: fast at K = 4096
        lines = ax.vlines(data.x, 0.0, heights, color="#3b6ea8", linewidth=0.8)
        lines.set_gid("bars")
    ax.set_ylabel("$s_i$")
    ax.set_ylim(0.0, _top(data.values))
    if len(data.x) <= MAX_HEATMAP:
        ax.set_xticks(data.x, data.names)
        for x, h in zip(data.x, heights, strict=True):
            ax.text(x, h + 0.02, f"{h:.3f}", ha="center", fontsize=8)
    else:
        ax.set_xlabel("$i$")


def _jacobian(fig: Figure, data: FigureData) -> None:
    ax = fig.add_subplot()
    matrix = numpy.array(data.values)
    bound = max(float(numpy.abs(matrix).max()), 1e-300)
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
    image.set_gid("jacobian")
    ticks = list(range(len(data.classes)))
    ax.set_xticks(ticks, data.names if len(ticks) <= 6 else [str(n + 1) for n in data.classes])
    ax.set_yticks(ticks, data.names if len(ticks) <= 6 else [str(n + 1) for n in data.classes])
    ax.set_xlabel("$j$")
    ax.set_ylabel("$i$")
    if len(ticks) <= 6:
        for a in ticks:
            for b in ticks:
                value = matrix[a, b]
                dark = abs(value) > 0.6 * bound
                colour = "white" if dark else "black"
                ax.text(b, a, f"{value:.3f}", ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(image, ax=ax, label="$J_{ij}$")


_DRAW = {"temperature": _temperature, "probabilities": _probabilities, "jacobian": _jacobian}


def render(data: FigureData) -> RenderedFigure:
    with matplotlib.rc_context(_STYLE):
        # fixed margins: constrained layout would measure every label, which is slow
        fig = Figure(figsize=_SIZE)
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.16, top=0.96)
        _DRAW[data.key](fig, data)
        svg = io.StringIO()
        FigureCanvasSVG(fig).print_svg(svg, metadata=_SVG_METADATA)
        pdf = io.BytesIO()
        FigureCanvasPdf(fig).print_pdf(pdf, metadata=_PDF_METADATA)
    return RenderedFigure(data, svg.getvalue(), pdf.getvalue())


def figure_data(worked: WorkedExample) -> list[FigureData]:
    return [temperature_data(worked), probability_data(worked), jacobian_data(worked)]
