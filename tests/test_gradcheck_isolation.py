"""The checker stays in control: whatever the function does to its process, the check ends
with a report and exit 1, naming what happened and the kind of input; one worker process
serves all calls, so a check stays fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from symsoft.gradcheck import check_gradient

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "gradcheck_examples"
HOSTILE = EXAMPLES / "hostile.py"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "symsoft.gradcheck.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_sys_exit_0_inside_the_function_is_exit_1_with_a_report():
    """Before issue 19, this made `symsoft check` exit 0 without a report."""
    run = cli(f"{HOSTILE}:exits", "-k", "3", "--n-random", "4", "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    data = json.loads(run.stdout)  # a whole report, on an untouched stdout
    assert data["verdict"] == "wrong" and data["diagnosis"][0]["bug"] == "escaped"
    assert "called sys.exit(0)" in data["diagnosis"][0]["message"]


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("exits", "called sys.exit(0) (at hostile.py:"),
        ("os_exits", "ended the process with exit code 3"),
        ("interrupts", "raised KeyboardInterrupt (at hostile.py:"),
        ("segfaults", "crashed with SIGSEGV (segmentation fault)"),
        ("forks", "forked a child process (os.fork)"),
        ("hooks", "registered an atexit hook (in hostile.py)"),
        ("closes", "closed stdout"),
        ("sleeps", "did not return within 0.5 s (--timeout)"),
    ],
)
def test_what_the_function_does_to_its_process_is_a_wrong_verdict(name, event):
    # through the API: were the function not isolated, it would end or hang this test
    report = check_gradient(f"{HOSTILE}:{name}", 3, n_random=4, timeout=0.5)
    assert report.exit_code == 1
    (finding,) = report.findings
    assert finding.bug == "escaped" and event in finding.message, report.text()
    assert set(dict(finding.kinds)) == {"masked"}  # the input kind that caused it
    # every other input was still checked, and passed
    assert report.n_failed == finding.inputs and report.kinds()[0].failed == 0


def test_segfault_in_c_code_is_reported_on_the_masked_inputs():
    source = EXAMPLES / "c" / "softmax_double.c"
    report = check_gradient(f"{source}:ce_grad_crashes_on_masks", 4, labels="any", n_random=4)
    assert report.bugs == ("escaped",) and "SIGSEGV" in report.findings[0].message
    assert dict(report.findings[0].kinds) == {"masked": report.n_failed}


def test_the_whole_check_has_a_time_limit():
    start = time.monotonic()
    report = check_gradient(f"{HOSTILE}:slow", 3, n_random=40, check_timeout=0.5)
    assert time.monotonic() - start < 5
    assert report.bugs == ("escaped",)
    assert "not run: the check's time limit (0.5 s) ran out" in report.findings[0].message


def test_bad_timeouts_are_usage_errors():
    run = cli(f"{HOSTILE}:slow", "-k", "3", "--timeout", "0")
    assert run.returncode == 2 and "timeout must be a positive number" in run.stderr
    run = cli(f"{HOSTILE}:slow", "-k", "3", "--check-timeout", "nan")
    assert run.returncode == 2 and "check_timeout must be a positive number" in run.stderr


def test_one_worker_process_serves_every_call():
    checker = os.getpid()

    def elsewhere(z, y):
        if os.getpid() == checker:
            raise RuntimeError("called in the checker's own process")
        e = np.exp(z - np.max(z))
        return e / np.sum(e) * np.sum(y) - y

    report = check_gradient(elsewhere, 3, n_random=8)
    assert report.ok, report.text()
    assert report.restarts == 0


def test_prints_go_to_stderr_and_the_json_stays_valid():
    run = cli(f"{HOSTILE}:prints", "-k", "3", "--n-random", "4", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["verdict"] == "correct"
    assert "debug output" in run.stderr and "raw write to fd 1" in run.stderr


def test_a_check_at_k5_takes_under_3_seconds():
    start = time.monotonic()
    run = cli(f"{EXAMPLES}/grads.py:ce_grad", "-k", "5")
    elapsed = time.monotonic() - start
    assert run.returncode == 0, run.stderr
    assert elapsed < 3.0, f"{elapsed:.2f} s"


# ---- after JAX has run in the checker's process ----
# JAX's XLA threads do not survive the fork that isolates the function: a JAX call in the
# child waits for them forever. Each test runs in a fresh process that runs JAX first, as a
# user's notebook would (this test process may or may not have run JAX already).

AFTER_JAX = (
    "import jax, jax.numpy as jnp, numpy as np\n"
    "from symsoft.gradcheck import check_gradient\n"
    "from symsoft.gradcheck.errors import CheckUsageError\n"
    "jnp.ones(3).sum().block_until_ready()  # JAX has run: its threads exist\n"
)


def after_jax(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    script = tmp_path / "after_jax.py"
    script.write_text(AFTER_JAX + code)
    # -W error: a warning (JAX's at fork) is an error, printed to stderr
    return subprocess.run(
        [sys.executable, "-W", "error", str(script)], capture_output=True, text=True, timeout=120
    )


def test_a_numpy_function_is_checked_without_a_fork_warning_after_jax_has_run(tmp_path):
    """JAX warns at every fork once it has run ("this will likely lead to a deadlock"): a
    user saw it at every check of a plain NumPy gradient, which the child runs fine."""
    done = after_jax(
        tmp_path,
        "def g(z, y):\n"
        "    e = np.exp(z - np.max(z))\n"
        "    return e / np.sum(e) * np.sum(y) - y\n"
        "r = check_gradient(g, 3, n_random=4)\n"
        "print(r.ok, r.restarts)\n",
    )
    assert done.returncode == 0 and done.stdout == "True 0\n", done.stdout + done.stderr
    assert done.stderr == ""


def test_a_jax_function_is_refused_at_once_after_jax_has_run(tmp_path):
    """Every call would hang until the check's time limit: one line saying why instead."""
    done = after_jax(
        tmp_path,
        "for fn, array in [\n"
        f"    ({f'{EXAMPLES}/jax_grads.py:softmax_jacobian'!r}, 'jax'),\n"
        "    (jax.jit(jax.jacrev(jax.nn.softmax)), 'numpy'),  # JAX takes NumPy arrays too\n"
        "]:\n"
        "    try:\n"
        "        r = check_gradient(fn, 3, 'softmax', array=array, n_random=4, check_timeout=5)\n"
        "        print('checked:', r.ok)\n"
        "    except CheckUsageError as e:\n"
        "        print(e)\n",
    )
    refusal = (
        "cannot check a JAX function here: JAX has already run in this process, and JAX hangs "
        "in the forked process fn runs in; check from a process that has not run JAX (symsoft "
        "check, with no JAX computation when the file is imported)\n"
    )
    assert done.stdout == 2 * refusal, done.stdout + done.stderr
    assert done.returncode == 0 and done.stderr == ""


def test_a_call_that_hangs_after_jax_has_run_says_jax_may_be_why(tmp_path):
    """A plain function calling JAX inside cannot be told from any other: it hangs, and the
    hang's message names the likely cause and the remedy."""
    done = after_jax(
        tmp_path,
        "def g(z, y):\n"
        "    return np.asarray(jax.nn.softmax(jnp.asarray(z))) * np.sum(y) - y\n"
        "r = check_gradient(g, 3, n_random=4, timeout=1, check_timeout=3)\n"
        "print(r.exit_code, r.bugs)\n"
        "print(r.findings[0].message)\n",
    )
    assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
    assert done.stdout.startswith("1 ('escaped',)\n")
    assert (
        "did not return within 1 s (--timeout); JAX has already run in this process, and JAX "
        "hangs in the forked process fn runs in: if fn uses JAX, check from a process that has "
        "not run JAX (symsoft check, with no JAX computation when the file is imported)"
    ) in done.stdout


def test_symsoft_check_refuses_a_file_that_runs_jax_when_imported(tmp_path):
    """symsoft check imports the file in its own process, before forking: a JAX computation at
    import is JAX run in the checker. One line and exit 2, not a check that hangs."""
    module = tmp_path / "jax_at_import.py"
    module.write_text(
        "import jax, jax.numpy as jnp\n"
        "WEIGHTS = jnp.ones(3)  # runs JAX on import\n"
        "softmax_jacobian = jax.jit(jax.jacrev(jax.nn.softmax))\n"
    )
    target = f"{module}:softmax_jacobian"
    run = cli(target, "-k", "3", "--of", "softmax", "--array", "jax", "--check-timeout", "5")
    assert run.returncode == 2 and run.stdout == "", run.stdout + run.stderr
    assert run.stderr == (
        "symsoft check: error: cannot check a JAX function here: JAX has already run in this "
        "process, and JAX hangs in the forked process fn runs in; check from a process that has "
        "not run JAX (symsoft check, with no JAX computation when the file is imported)\n"
    )
