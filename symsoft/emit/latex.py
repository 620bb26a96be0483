"""Bundle -> derivation_k{K}.tex, a standalone LaTeX document."""

from __future__ import annotations

from symsoft.bundle import Bundle
from symsoft.emit.kernels import C_KERNELS, c_name
from symsoft.printers import latex
from symsoft.render import render


def _tex_text(text: str) -> str:
    """Escape the characters LaTeX treats specially in running text."""
    special = {
        "\\": r"\textbackslash{}",
        "_": r"\_",
        "&": r"\&",
        "%": r"\%",
        "#": r"\#",
        "$": r"\$",
        "{": r"\{",
        "}": r"\}",
        "^": r"\^{}",
        "~": r"\~{}",
    }
    return "".join(special.get(ch, ch) for ch in text)


def emit_latex(bundle: Bundle) -> dict[str, str]:
    f, k, w = bundle.kernel, bundle.k, bundle.worked
    identities = [
        {
            "name": _tex_text(identity.name),
            "method": _tex_text(identity.method),
            "assumption": _tex_text(identity.assumption),
        }
        for identity in bundle.identities
    ]
    text = render(
        "derivation.tex.jinja",
        k,
        "float32, float64",
        jacobian=latex(f.jacobian),
        gradient=latex(f.gradient),
        log_probability=latex(f.log_probability),
        probability=latex(f.probability),
        identities=identities,
        example=[
            {"label": _tex_text(label), "z": f"{z:g}", "e": f"{e:.3f}", "p": f"{p:.3f}"}
            for label, z, e, p in zip(
                w.labels, w.logits, w.exponentials, w.probabilities, strict=True
            )
        ],
        total=f"{w.total:.3f}",
        winner=_tex_text(w.labels[w.winner]),
        kernels=[
            {
                "python": _tex_text(kern.name),
                "c": _tex_text(c_name(kern.name, k, "f64")),
            }
            for kern in C_KERNELS
        ],
    )
    return {f"derivation_k{k}.tex": text}
