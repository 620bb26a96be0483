"""The derivation document as PDF: pdflatex, run in a temporary folder (optional tool).

Like build.py for C, this compiles what an emitter produced; the .tex itself is complete
without it. SOURCE_DATE_EPOCH pins the dates pdfTeX writes, so the same .tex gives the same
PDF bytes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from symsoft.errors import SymsoftError

PDFLATEX = "pdflatex"
TIMEOUT_SECONDS = 180
MAX_RUNS = 3  # two for references; a third only if LaTeX still asks (longtable widths)

INSTALL_HINT = (
    "install TeX Live (Debian/Ubuntu: apt-get install texlive-latex-base "
    "texlive-latex-recommended lmodern; for --lang zh also latex-cjk-chinese "
    "latex-cjk-chinese-arphic-gbsn00lp; macOS: MacTeX; Windows: TeX Live or MiKTeX)"
)
# TeX files whose absence has a known remedy
_PROVIDERS = {
    "lmodern.sty": "apt-get install lmodern (TeX Live: tlmgr install lm)",
    "CJKutf8.sty": "apt-get install latex-cjk-chinese (TeX Live: tlmgr install cjk)",
    "c70gbsn.fd": (
        "apt-get install latex-cjk-chinese-arphic-gbsn00lp (TeX Live: tlmgr install arphic)"
    ),
}


class PdfError(SymsoftError):
    """The PDF could not be made; the message says why and what to install."""


@dataclass(frozen=True)
class PdfResult:
    pdf: bytes
    log: str  # pdflatex's log of the last run: warnings, overfull boxes


def pdflatex_available() -> bool:
    return shutil.which(PDFLATEX) is not None


def build_pdf(tex: str, name: str, files: Mapping[str, bytes] | None = None) -> bytes:
    """The PDF for the LaTeX source tex; name is the output's file name (for messages);
    files are what the source includes (the figures), by name."""
    return compile_tex(tex, name, files).pdf


def compile_tex(tex: str, name: str, files: Mapping[str, bytes] | None = None) -> PdfResult:
    """Run pdflatex until references settle (at most MAX_RUNS times); raise PdfError."""
    executable = shutil.which(PDFLATEX)
    if executable is None:
        raise PdfError(
            f"pdflatex was not found, so {_pdf_name(name)} was not made (the .tex is "
            f"complete and compiles with any LaTeX); to get the PDF, {INSTALL_HINT}"
        )
    stem = _pdf_name(name).removesuffix(".pdf")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1"}
    with tempfile.TemporaryDirectory(prefix="symsoft-pdf-") as folder:
        work = Path(folder)
        (work / f"{stem}.tex").write_text(tex, encoding="utf-8")
        for file, data in (files or {}).items():
            (work / Path(file).name).write_bytes(data)
        command = [
            executable,
            "-interaction=nonstopmode",
            "-halt-on-error",
            "-no-shell-escape",
            f"{stem}.tex",
        ]
        log = ""
        for run in range(1, MAX_RUNS + 1):
            try:
                done = subprocess.run(
                    command,
                    cwd=work,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=TIMEOUT_SECONDS,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise PdfError(f"pdflatex took over {TIMEOUT_SECONDS} s on {stem}.tex") from None
            log_file = work / f"{stem}.log"
            if log_file.exists():
                log = log_file.read_text(encoding="utf-8", errors="replace")
            if done.returncode != 0:
                raise PdfError(_failure(stem, log or done.stdout.decode(errors="replace")))
            if run >= 2 and "Rerun" not in log:
                break
        return PdfResult((work / f"{stem}.pdf").read_bytes(), log)


def _pdf_name(name: str) -> str:
    """derivation_k3.tex or derivation_k3 -> derivation_k3.pdf."""
    base = Path(name).name
    for suffix in (".tex", ".pdf"):
        base = base.removesuffix(suffix)
    return f"{base}.pdf"


def _failure(stem: str, log: str) -> str:
    missing = re.search(r"File `([^']+)' not found", log)
    if missing:
        file = missing.group(1)
        remedy = _PROVIDERS.get(file, f"install the TeX package that provides {file}")
        return f"pdflatex could not make {stem}.pdf: {file} is missing; {remedy}"
    lines = log.splitlines()
    first = next((n for n, line in enumerate(lines) if line.startswith("!")), None)
    detail = "\n".join(lines[first : first + 6]) if first is not None else "\n".join(lines[-10:])
    return f"pdflatex failed on {stem}.tex:\n{detail}"
