"""The derivation document as flat data: blocks of text runs, equations and tables.

symsoft.document fills it from a Bundle; the LaTeX and Markdown emitters lay it out. Runs
keep maths, code names and references apart from prose, so that each format can write them
its own way. Also here: the builder that numbers sections and equations, and the helpers that
format maths and evaluated numbers.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sympy

from symsoft.document.printer import tex
from symsoft.document.text import TEXT

# --- the view ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Math:
    tex: str


@dataclass(frozen=True)
class Code:
    text: str
    file: bool = False  # a file name: never broken across lines


@dataclass(frozen=True)
class Ref:
    kind: str  # "eq", "sec" or "fig"
    key: str


Run = str | Math | Code | Ref
Text = tuple[Run, ...]


@dataclass(frozen=True)
class Proof:
    """How one displayed equality was checked, for the appendix."""

    name: str
    scope: Text


@dataclass(frozen=True)
class Paragraph:
    text: Text
    lead: Text = ()


@dataclass(frozen=True)
class Equation:
    key: str
    number: str
    body: str  # display maths, the same for LaTeX and KaTeX
    kind: str  # "proved", "definition" or "computation"
    proofs: tuple[Proof, ...] = ()


@dataclass(frozen=True)
class Table:
    align: str  # one of l, r, c per column
    header: tuple[Text, ...]
    rows: tuple[tuple[Text, ...], ...]
    total: tuple[Text, ...] = ()  # a final row set off by a rule
    small: bool = False  # LaTeX: a smaller font, for a table of long names


@dataclass(frozen=True)
class Figure:
    """A figure drawn from the worked example: SVG for the Markdown, PDF for pdflatex."""

    key: str  # temperature, probabilities, jacobian
    number: str
    caption: Text
    svg: str
    pdf: bytes


@dataclass(frozen=True)
class Part:
    """Starts a part of the document (the lesson, then the implementation notes)."""

    title: Text


Block = Paragraph | Equation | Table | Figure


@dataclass(frozen=True)
class Section:
    key: str
    number: str
    title: Text
    blocks: tuple[Block, ...]
    appendix: bool = False
    part: Text = ()  # the title of the part this section opens, if it opens one


@dataclass(frozen=True)
class Document:
    lang: str
    k: int
    title: Text
    author: Text
    footnote: Text  # to the author line: the generator and its version
    intro: tuple[Block, ...]
    sections: tuple[Section, ...]
    numbers: Mapping[str, str]  # "eq:key" and "sec:key" -> the number shown

    def equations(self) -> list[Equation]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Equation)]

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]


def document_name(k: int, lang: str, extension: str) -> str:
    """derivation_k3.tex for English, derivation_k3.zh.tex for Chinese (tex, md, pdf)."""
    suffix = "" if lang == "en" else f".{lang}"
    return f"derivation_k{k}{suffix}.{extension}"


# The document's figures, in the order they appear (symsoft.document.figures draws them).
FIGURE_KEYS = ("temperature", "probabilities", "jacobian")


def figure_name(k: int, lang: str, key: str, extension: str) -> str:
    """derivation_k3-temperature.svg (beside the Markdown) or .pdf (beside the LaTeX)."""
    stem = document_name(k, lang, extension).removesuffix(f".{extension}")
    return f"{stem}-{key}.{extension}"


def figure_names(k: int, lang: str, extension: str) -> list[str]:
    return [figure_name(k, lang, key, extension) for key in FIGURE_KEYS]


# --- building ------------------------------------------------------------------------------


@dataclass
class Builder:
    lang: str
    fields: dict[str, Run | Text]
    intro: list[Block] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    numbers: dict[str, str] = field(default_factory=dict)
    _blocks: list[Block] | None = None
    _key: str = ""
    _title: Text = ()
    _appendix: bool = False
    _part: Text = ()
    _pending_part: Text = ()
    _equations: int = 0
    _figures: int = 0

    def text(self, key: str, **extra: Run | Text) -> Text:
        """The language's string for key, placeholders filled; {eq:x}/{sec:x} are references."""
        values = {**self.fields, **extra}
        runs: list[Run] = []
        for literal, name, spec, _ in string.Formatter().parse(TEXT[self.lang][key]):
            if literal:
                runs.append(literal)
            if name is None:
                continue
            if name in ("eq", "sec", "fig"):
                runs.append(Ref(name, spec))
                continue
            value = values[name]
            runs.extend(value if isinstance(value, tuple) else (value,))
        return tuple(runs)

    def part(self, title_key: str) -> None:
        """The next section opens a new part."""
        self._pending_part = self.text(title_key)

    def section(self, key: str, title_key: str, *, appendix: bool = False) -> None:
        self._close()
        if appendix:
            number = chr(ord("A") + sum(s.appendix for s in self.sections))
        else:
            number = str(sum(not s.appendix for s in self.sections) + 1)
        self.numbers[f"sec:{key}"] = number
        self._blocks, self._key, self._title = [], key, self.text(title_key)
        self._appendix, self._equations = appendix, 0
        self._part, self._pending_part = self._pending_part, ()

    def _close(self) -> None:
        if self._blocks is not None:
            number = self.numbers[f"sec:{self._key}"]
            self.sections.append(
                Section(
                    self._key,
                    number,
                    self._title,
                    tuple(self._blocks),
                    self._appendix,
                    self._part,
                )
            )

    def add(self, block: Block) -> None:
        (self._blocks if self._blocks is not None else self.intro).append(block)

    def para(self, key: str, lead: str = "", **extra: Run | Text) -> None:
        self.add(Paragraph(self.text(key, **extra), self.text(lead) if lead else ()))

    def equation(
        self, key: str, body: str, kind: str = "proved", proofs: Sequence[Proof] = ()
    ) -> None:
        self._equations += 1
        number = f"{self.numbers[f'sec:{self._key}']}.{self._equations}"
        self.numbers[f"eq:{key}"] = number
        self.add(Equation(key, number, body, kind, tuple(proofs)))

    def figure(self, key: str, caption: Text, svg: str, pdf: bytes) -> None:
        self._figures += 1
        number = str(self._figures)
        self.numbers[f"fig:{key}"] = number
        self.add(Figure(key, number, caption, svg, pdf))

    def finish(self, title: Text, author: Text, footnote: Text, k: int) -> Document:
        self._close()
        return Document(
            self.lang,
            k,
            title,
            author,
            footnote,
            tuple(self.intro),
            tuple(self.sections),
            self.numbers,
        )


# --- maths helpers -------------------------------------------------------------------------


def printed(expr: sympy.Basic) -> Math:
    return Math(tex(expr))


def chain(steps: Sequence[sympy.Basic]) -> str:
    """steps[0] = steps[1] = ..., one line for two members, aligned lines for more."""
    printed = [tex(step) for step in steps]
    if len(printed) == 2:
        return f"{printed[0]} = {printed[1]}"
    lines = [f"{printed[0]} &= {printed[1]}"] + [f"&= {p}" for p in printed[2:]]
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


def side_by_side(*bodies: str) -> str:
    return r", \qquad ".join(bodies)


def index_range(variable: sympy.Symbol, k: int) -> str:
    """'i = 1, 2, 3' or 'i = 1, 2, \\ldots, 50'."""
    values = [str(n) for n in range(1, k + 1)] if k <= 3 else ["1", "2", r"\ldots", str(k)]
    return f"{tex(variable)} = {', '.join(values)}"


def gt(lhs: sympy.Expr, rhs: sympy.Expr) -> Math:
    return printed(sympy.StrictGreaterThan(lhs, rhs, evaluate=False))


def eq(lhs: sympy.Basic, rhs: sympy.Basic) -> Math:
    """A condition or an assignment of a value, not a claim (claims are displayed and checked)."""
    return printed(sympy.Eq(lhs, rhs, evaluate=False))


# --- numbers (evaluated, formatted for maths mode) ------------------------------------------


def number(x: float, places: int = 3) -> str:
    """Fixed point with `places` decimals; scientific beyond what that shows well."""
    x += 0.0  # no "-0.000"
    if x != 0 and not (10.0**-places <= abs(x) < 1e6):
        mantissa, exponent = f"{x:.3e}".split("e")
        return rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return f"{x:.{places}f}"


def fixed(x: float, places: int = 3) -> str:
    """Fixed point for values known to be close to a round number (no "-0.000")."""
    text = f"{x:.{places}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def percent(p: float) -> Text:
    """65.9 % as maths and text: GitHub drops backslash escapes such as \\% in inline maths."""
    return (Math(fixed(100 * p, 1)), "\u00a0%")


def logit(x: float) -> str:
    """A logit as the user typed it (shortest round-trip form)."""
    text = repr(float(x))
    if "e" in text:
        mantissa, exponent = text.split("e")
        return rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return text


def num(x: float, places: int = 3) -> Math:
    return Math(number(x, places))


def parenthesised(values: Sequence[str]) -> str:
    return r"\left(" + ", ".join(values) + r"\right)"
