"""The command line, run as a user runs it: exit codes, messages, files written or not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from symsoft import cli
from symsoft.version import __version__
from tests.conftest import ON_CI


def symsoft(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symsoft", *args], cwd=cwd, capture_output=True, text=True
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


FIGURES = sorted(("temperature", "probabilities", "jacobian"))


def test_version(tmp_path):
    result = symsoft("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"symsoft {__version__}"


def test_default_generates_k3_into_generated(tmp_path):
    result = symsoft("generate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "generated" / "k3").iterdir())
    figures = [f"derivation_k3-{f}.{e}" for f in FIGURES for e in ("pdf", "svg")]
    expected = [
        *figures,
        "derivation_k3.md",
        "derivation_k3.tex",
        "softmax_k3.c",
        "softmax_k3.h",
        "softmax_k3.py",
        "vectors_k3.json",
    ]
    if shutil.which("pdflatex") or ON_CI:
        expected.insert(len(figures) + 1, "derivation_k3.pdf")
    else:
        assert "pdflatex is not installed" in result.stderr
    assert names == expected


def test_without_pdflatex_a_note_says_how_to_get_it(tmp_path):
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # python, but no TeX
    result = subprocess.run(
        [sys.executable, "-m", "symsoft", "generate", "-o", "out", "--targets", "latex,pdf"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "derivation_k3.pdf not written: pdflatex is not installed" in result.stderr
    assert "apt-get install texlive-latex-base" in result.stderr
    # the .tex and the figures it includes
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        *(f"derivation_k3-{f}.pdf" for f in FIGURES),
        "derivation_k3.tex",
    ]


def test_output_is_deterministic_and_refuses_to_overwrite(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert symsoft("generate", "-k", "4", "-o", str(first), cwd=tmp_path).returncode == 0
    assert symsoft("generate", "--k", "4", "--out", str(second), cwd=tmp_path).returncode == 0
    assert snapshot(first) == snapshot(second)

    # files symsoft wrote and nobody changed are symsoft's to replace: no --force needed
    again = symsoft("generate", "-k", "4", "-o", str(first), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert snapshot(first) == snapshot(second)

    (first / "softmax_k4.c").write_text("edited by hand\n")
    before = snapshot(first)
    result = symsoft("generate", "-k", "4", "-o", str(first), cwd=tmp_path)
    assert result.returncode == 2
    assert "--force" in result.stderr
    assert snapshot(first) == before

    assert symsoft("generate", "-k", "4", "-o", str(first), "--force", cwd=tmp_path).returncode == 0
    assert snapshot(first) == snapshot(second)


@pytest.mark.parametrize(
    ("k", "message"),
    [
        ("0", "between 1 and"),
        ("-3", "between 1 and"),
        ("2.5", "integer"),
        ("three", "integer"),
        ("100000000", "between 1 and"),
    ],
)
def test_invalid_k_is_one_line_exit_2_nothing_written(tmp_path, k, message):
    result = symsoft("generate", "-k", k, "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--example", "1,2"], "needs 3 logits"),
        (["--example", "1,x,3"], "comma-separated numbers"),
        (["--example", "1,nan,3"], "finite"),
        (["--labels", "a,b"], "needs 3 names"),
        (["--labels", "cat,cat,dog"], "repeated: cat"),
        (["--labels", "cat,d$g,bird"], "must start with a letter"),
    ],
)
def test_bad_example_or_labels_exit_2(tmp_path, args, message):
    result = symsoft("generate", "-o", str(tmp_path / "out"), *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_output_path_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "out"
    target.write_text("not a folder")
    result = symsoft("generate", "-o", str(target), cwd=tmp_path)
    assert result.returncode == 2
    assert "not a folder" in result.stderr
    assert target.read_text() == "not a folder"


EXAMPLES = Path(__file__).parent / "gradcheck_examples"


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("correct.py:cross_entropy_grad", 0),
        ("sign_flipped.py:cross_entropy_grad", 1),
        ("correct.py:no_such_function", 2),
        ("no_such_file.py:cross_entropy_grad", 2),
    ],
)
def test_check_command_exit_codes(tmp_path, target, code):
    result = symsoft("check", str(EXAMPLES / target), "-k", "3", "--n-random", "8", cwd=tmp_path)
    assert result.returncode == code, result.stdout + result.stderr


def test_targets_pick_what_is_emitted(tmp_path):
    result = symsoft("generate", "--targets", "c,numpy", "-o", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "softmax_k3.c",
        "softmax_k3.h",
        "softmax_k3.py",
    ]
    bad = symsoft("generate", "--targets", "c,fortran", "-o", str(tmp_path / "x"), cwd=tmp_path)
    assert bad.returncode == 2 and "--targets" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_numpy_only_flag_emits_the_numpy_only_module(tmp_path):
    for flags, folder in (((), "default"), (("--numpy-only",), "numpy-only")):
        out = tmp_path / folder
        result = symsoft("generate", "--targets", "numpy", *flags, "-o", str(out), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    # run each in a fresh interpreter that cannot import array_api_compat
    blocker = "import sys; sys.modules['array_api_compat'] = None; "
    for folder, works in (("numpy-only", True), ("default", False)):
        code = f"{blocker}sys.path.insert(0, {str(tmp_path / folder)!r}); import softmax_k3; "
        code += "print(softmax_k3.softmax([2.0, 1.0, 0.1]).round(3).tolist())"
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert (run.returncode == 0) is works, run.stderr
        if works:
            assert run.stdout.strip() == "[0.659, 0.242, 0.099]"


def test_progress_only_on_a_terminal(tmp_path):
    """Piped (as here) the CLI prints only the written paths; on a terminal it draws a bar."""
    import io

    from symsoft.progress import Progress

    piped = symsoft("generate", "-o", str(tmp_path / "o"), cwd=tmp_path)
    assert piped.stderr == ""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = Progress(3, stream=screen)
    progress("deriving")
    progress("emitting c")
    progress.close()
    assert "1/3 deriving" in screen.getvalue() and "2/3 emitting c" in screen.getvalue()
    quiet = Terminal()
    Progress(3, stream=quiet, quiet=True)("deriving")
    assert quiet.getvalue() == ""


def test_every_command_has_help_with_an_example(tmp_path):
    for command in ("generate", "check"):
        result = symsoft(command, "--help", cwd=tmp_path)
        assert result.returncode == 0
        assert "example" in result.stdout


@pytest.fixture
def requested(monkeypatch):
    """cli.main in this process, with generate() recording the Spec it was given instead of
    deriving anything (what these tests check is decided before)."""
    specs = []

    def generate(spec, out, **kwargs):
        specs.append(spec)
        return [out / "softmax_k3.py"]

    monkeypatch.setattr("symsoft.pipeline.generate", generate)
    return specs


@pytest.mark.parametrize(
    "args, example",
    [
        (["--example", "-1,2,3"], (-1.0, 2.0, 3.0)),
        (["--example", "-.5,2,-3"], (-0.5, 2.0, -3.0)),
        (["--example=-1,2,3"], (-1.0, 2.0, 3.0)),
        (["--example", "-1e2,0,1", "-q"], (-100.0, 0.0, 1.0)),
    ],
)
def test_a_negative_first_logit_is_accepted(requested, capsys, args, example):
    assert cli.main(["generate", *args]) == 0, capsys.readouterr().err
    assert requested[0].example == example


def test_a_value_that_is_not_numbers_is_one_line_exit_2(requested, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["generate", "--example", "-x,2,3"])
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.splitlines()) == 1 and not requested


@pytest.mark.parametrize("text", ["\u00b2", "\u0663", "0", "4", "1.0", "horse"])
def test_a_bad_true_class_is_one_line_exit_2(requested, capsys, text):
    assert cli.main(["generate", "--true-class", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("symsoft: error: --true-class must be a class number")
    assert len(err.splitlines()) == 1 and not requested


def test_bare_symsoft_prints_the_usage(tmp_path):
    result = symsoft(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: symsoft")
    assert "generate" in result.stderr and "check" in result.stderr


def test_quiet_prints_nothing(requested, capsys):
    assert cli.main(["generate", "--targets", "numpy", "-o", "a"]) == 0
    assert capsys.readouterr().out.split() == [str(Path("a") / "softmax_k3.py")]
    assert cli.main(["generate", "--targets", "numpy", "-q", "-o", "b"]) == 0
    assert capsys.readouterr() == ("", "")
