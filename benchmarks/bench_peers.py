"""Code generation beside SymForce and CasADi: generation time, emitted code size, compile time.

    PEERS=/work/scratch/peers-venv/bin/python   # a venv with casadi and symforce (RESULTS.md)
    $PEERS benchmarks/bench_peers.py                  # K = 2, 3, 8, 32, 128, 512, 1024
    $PEERS benchmarks/bench_peers.py --quick          # K = 2, 3, 8, 32
    $PEERS benchmarks/bench_peers.py --ks 8,64 --timeout 60 --tools symsoft,casadi

Optional and not part of the tests. Every tool emits the same three functions: softmax s(z)
(K outputs), its K x K Jacobian, and the cross-entropy gradient dL/dz of
L = -sum_i y_i log s_i (inputs z and y), each in its own natural way:

- symsoft: `symsoft generate -k K --targets c` from the project's venv (--symsoft), so the peers'
  packages never meet the project's pinned SymPy;
- SymForce: symforce.codegen.Codegen with the C++ backend (it has no C backend) over
  sf.Matrix(K, 1) symbols; the Jacobian and gradient come from Matrix.jacobian;
- CasADi: SX expressions, jacobian() and gradient(), one CodeGenerator file with a header.

Each generation runs in a fresh process (this file with --worker for the peers), so its time is
what a user waits for, interpreter start-up and imports included. The emitted files are then
compiled to an object file with `-O2 -w` (SymForce's templates through a small translation unit
that instantiates them for double). A step that runs past --timeout is killed and reported; a
tool that timed out at one K is not tried at larger K for that step.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FULL = (2, 3, 8, 32, 128, 512, 1024)
QUICK = (2, 3, 8, 32)
TOOLS = ("symsoft", "symforce", "casadi")
ROOT = Path(__file__).resolve().parent.parent
SOURCE_SUFFIXES = {".c", ".h", ".cc", ".hpp", ".cpp"}
FLAGS = ("-O2", "-w")
CC = os.environ.get("CC", "cc")
CXX = os.environ.get("CXX", "c++")
# the three SymForce functions: Codegen name -> C++ function name, for the instantiation unit
SYMFORCE_FUNCTIONS = {
    "softmax": "Softmax",
    "softmax_jacobian": "SoftmaxJacobian",
    "cross_entropy_grad": "CrossEntropyGrad",
}


class StepTimeout(Exception):
    """A step ran past its time limit and was killed."""


class StepFailed(Exception):
    """A step exited with an error; the message is the last line it wrote."""


def run(command: list[str], timeout: float) -> float:
    """Seconds of wall time for command; its whole process group is killed on timeout.

    cc and c++ fork cc1/cc1plus: killing the driver alone would leave the compiler running on a
    shared machine, hence the new session and killpg.
    """
    start = time.perf_counter()
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            _, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise StepTimeout from None
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        raise StepFailed(lines[-1][:80] if lines else f"exit code {process.returncode}")
    return seconds


# --- generation in the worker process (peers venv) -------------------------------------------


def generate_symforce(k: int, out: Path) -> None:
    """softmax_kK, its Jacobian and the loss gradient as SymForce C++ headers in out."""
    import symforce

    # the expressions have no singularity to guard; a numeric epsilon only silences the warning
    symforce.set_epsilon_to_number()
    import symforce.symbolic as sf
    from symforce import codegen
    from symforce.values import Values

    z = sf.Matrix(k, 1).symbolic("z")
    y = sf.Matrix(k, 1).symbolic("y")
    e = z.applyfunc(sf.exp)
    s = e / sum(e)
    loss = -sum(y[i] * sf.log(s[i]) for i in range(k))
    functions = {
        "softmax": (Values(z=z), Values(s=s)),
        "softmax_jacobian": (Values(z=z), Values(jac=s.jacobian(z))),
        "cross_entropy_grad": (Values(z=z, y=y), Values(grad=sf.Matrix([loss]).jacobian(z).T)),
    }
    for name, (inputs, outputs) in functions.items():
        generator = codegen.Codegen(
            inputs=inputs, outputs=outputs, config=codegen.CppConfig(), name=name
        )
        generator.generate_function(output_dir=out, skip_directory_nesting=True)


def generate_casadi(k: int, out: Path) -> None:
    """The same three functions as one CasADi C file and its header in out."""
    import casadi as ca

    z = ca.SX.sym("z", k)
    y = ca.SX.sym("y", k)
    e = ca.exp(z)
    s = e / ca.sum1(e)
    loss = -ca.dot(y, ca.log(s))
    generator = ca.CodeGenerator(f"peers_k{k}.c", {"with_header": True})
    generator.add(ca.Function("softmax", [z], [s]))
    generator.add(ca.Function("softmax_jacobian", [z], [ca.jacobian(s, z)]))
    generator.add(ca.Function("cross_entropy_grad", [z, y], [ca.gradient(loss, z)]))
    generator.generate(f"{out}/")


NOTES = """\
Notes:

- Same maths, different code. No tool subtracts max z here except symsoft: the peers' softmax
  is the textbook exp(z_i) / sum exp(z_j), which overflows for z above about 709 (float64);
  symsoft's kernels are the stable, NaN/inf-aware ones of the README.
- symsoft's C is more than these three functions: one .c/.h pair holds 10 kernels, each in
  float64 and float32 (softmax, log-softmax, Jacobian, loss, gradient, loss with gradient, both
  with integer labels too, JVP, VJP), as loops with K a compile-time constant, so its size hardly
  depends on K. Its generate time includes deriving and proving the closed forms.
- SymForce and CasADi unroll every entry: the Jacobian alone is K*K expressions.
- SymForce 0.12 has C++, CUDA, Python, PyTorch, Rust and TypeScript backends but no C backend;
  its C++ (header-only templates over Eigen) is compiled with c++, with the Eigen parse cost
  shown above as a floor. Its gradient is the unsimplified derivative of L through s.
- Timings are wall time on a shared machine and noisy (see the load averages).
"""

WORKERS = {"symforce": generate_symforce, "casadi": generate_casadi}
IMPORTS = {"symforce": "symforce.symbolic", "casadi": "casadi"}


# --- measurement in the main process ---------------------------------------------------------


def generate(tool: str, k: int, out: Path, symsoft: Path, timeout: float) -> float:
    """Seconds for one tool to write its code for K into out, in a fresh process."""
    if tool == "symsoft":
        command = [str(symsoft), "generate", "-k", str(k), "--targets", "c", "-o", str(out)]
        return run([*command, "--force", "-q"], timeout)
    return run([sys.executable, __file__, "--worker", tool, str(k), str(out)], timeout)


def emitted(out: Path) -> tuple[list[Path], int, int]:
    """The emitted source files, their total bytes and lines."""
    files = sorted(p for p in out.iterdir() if p.suffix in SOURCE_SUFFIXES)
    texts = [p.read_bytes() for p in files]
    return files, sum(len(t) for t in texts), sum(t.count(b"\n") for t in texts)


def symforce_unit(k: int, out: Path) -> Path:
    """A C++ file instantiating SymForce's header-only templates for double.

    Including a template compiles nothing; the explicit instantiations make the compiler
    generate the code of the three functions, as a program using them would.
    """
    vector = f"Eigen::Matrix<double, {k}, 1>"
    outputs = {"softmax": vector, "softmax_jacobian": f"Eigen::Matrix<double, {k}, {k}>"}
    lines = [f'#include "{name}.h"' for name in SYMFORCE_FUNCTIONS]
    for name, function in SYMFORCE_FUNCTIONS.items():
        inputs = f"const {vector}&, const {vector}&" if name == "cross_entropy_grad" else None
        arguments = f"{inputs or f'const {vector}&'}, {outputs.get(name, vector)}*"
        lines.append(f"template void sym::{function}<double>({arguments});")
    unit = out.parent / "instantiate.cc"
    unit.write_text("\n".join(lines) + "\n")
    return unit


def compile_command(tool: str, k: int, out: Path, files: list[Path], eigen: Path | None) -> list:
    """The command compiling one tool's emitted code to an object file."""
    if tool == "symforce":
        if eigen is None:
            raise StepFailed("no Eigen headers (install casadi or libeigen3-dev)")
        unit = symforce_unit(k, out)
        return [CXX, *FLAGS, f"-I{eigen}", f"-I{out}", "-c", str(unit), "-o", str(unit) + ".o"]
    source = next(p for p in files if p.suffix == ".c")
    return [CC, *FLAGS, "-c", str(source), "-o", f"{source}.o"]


def find_eigen() -> Path | None:
    """Eigen's headers for SymForce's C++: the system's, or the copy inside the casadi wheel."""
    candidates = [Path("/usr/include/eigen3")]
    spec = importlib.util.find_spec("casadi")
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent / "include" / "eigen3")
    return next((p for p in candidates if (p / "Eigen" / "Core").exists()), None)


def versions(tools: list[str], symsoft: Path) -> dict[str, str]:
    """Version of each tool, with the SymPy/SymEngine it runs on."""
    found: dict[str, str] = {}
    for tool in tools:
        if tool == "symsoft":
            script = (
                "import importlib.metadata as m; print(m.version('symsoft'), m.version('sympy'))"
            )
            python = symsoft.parent / "python"
            symsoft_version, sympy = subprocess.run(
                [str(python), "-c", script], capture_output=True, text=True, check=True
            ).stdout.split()
            found[tool] = f"symsoft {symsoft_version} (SymPy {sympy})"
        elif tool == "symforce":
            import symforce

            found[tool] = f"symforce {symforce.__version__} ({symforce.get_symbolic_api()})"
        else:
            import casadi

            found[tool] = f"casadi {casadi.__version__}"
    return found


def startup(tool: str, symsoft: Path) -> float:
    """Seconds to start the interpreter and import the tool: a floor under its generate time."""
    if tool == "symsoft":
        return run([str(symsoft), "--version"], 60)
    return run([sys.executable, "-c", f"import {IMPORTS[tool]}"], 60)


def cpu_name() -> str:
    """The processor's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header(tools: list[str], missing: list[str], symsoft: Path, eigen: Path | None) -> None:
    """What was run, where and with which versions: the lines above the table."""
    compiler = subprocess.run([CC, "--version"], capture_output=True, text=True).stdout
    command = " ".join([Path(sys.executable).name, "benchmarks/bench_peers.py", *sys.argv[1:]])
    print(f"- command: `{command}`")
    print(
        f"- machine: {platform.machine()}, {cpu_name()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at start; Python {platform.python_version()}"
    )
    print(f"- C: `{CC} {' '.join(FLAGS)} -c`; {compiler.splitlines()[0]}")
    print(f"- tools: {'; '.join(versions(tools, symsoft).values())}")
    if missing:
        print(f"- not usable here, left out: {', '.join(missing)}")
    if "symforce" in tools and eigen is not None:
        with tempfile.TemporaryDirectory() as folder:
            unit = Path(folder) / "eigen.cc"
            unit.write_text("#include <Eigen/Core>\n")
            seconds = run([CXX, *FLAGS, f"-I{eigen}", "-c", str(unit), "-o", f"{unit}.o"], 60)
        print(f"- SymForce C++: `{CXX} {' '.join(FLAGS)} -c` with Eigen from {eigen}")
        print(f"- compiling `#include <Eigen/Core>` alone: {seconds:.2f} s")
    floors = ", ".join(f"{tool} {startup(tool, symsoft):.2f} s" for tool in tools)
    print(f"- start-up and import alone (included in generate): {floors}")


def measure(
    tool: str, k: int, symsoft: Path, eigen: Path | None, timeout: float, gave_up: dict
) -> list[str]:
    """One table row: generate, count the emitted code, compile it.

    gave_up maps (tool, step) to the K where that step timed out; it is read and updated.
    """
    cells = {"generate": "", "bytes": "", "lines": "", "compile": ""}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        out.mkdir()
        for step in ("generate", "compile"):
            if (tool, step) in gave_up:
                cells[step] = f"skipped (timeout at K = {gave_up[tool, step]})"
                break
            try:
                if step == "generate":
                    seconds = generate(tool, k, out, symsoft, timeout)
                    files, size, lines = emitted(out)
                    cells["bytes"], cells["lines"] = str(size), str(lines)
                else:
                    seconds = run(compile_command(tool, k, out, files, eigen), timeout)
                cells[step] = f"{seconds:.2f}"
            except StepTimeout:
                gave_up[tool, step] = k
                cells[step] = f"timeout > {timeout:.0f} s"
                break
            except StepFailed as error:
                cells[step] = f"failed: {error}"
                break
    return [str(k), tool, *cells.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=str, help="comma-separated values of K")
    parser.add_argument("--quick", action="store_true", help=f"K = {QUICK}")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per step")
    parser.add_argument("--tools", type=str, default=",".join(TOOLS), help="comma-separated")
    parser.add_argument(
        "--symsoft",
        type=Path,
        default=ROOT / ".venv" / "bin" / "symsoft",
        help="the symsoft executable (default: the project's .venv)",
    )
    parser.add_argument("--worker", nargs=3, metavar=("TOOL", "K", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        tool, k, out = args.worker
        WORKERS[tool](int(k), Path(out))
        return

    ks = [int(v) for v in args.ks.split(",")] if args.ks else list(QUICK if args.quick else FULL)
    tools: list[str] = []
    missing: list[str] = []
    for tool in args.tools.split(","):
        if tool == "symsoft":
            usable = args.symsoft.exists()
        else:
            usable = importlib.util.find_spec(tool) is not None
        (tools if usable else missing).append(tool)
    eigen = find_eigen()
    header(tools, missing, args.symsoft, eigen)
    print(f"- timeout per step: {args.timeout:.0f} s")
    print()
    print("| K | tool | generate (s) | C bytes | C lines | compile (s) |")
    print("|---:|---|---:|---:|---:|---:|")
    start = time.perf_counter()
    gave_up: dict[tuple[str, str], int] = {}
    for k in ks:
        for tool in tools:
            row = measure(tool, k, args.symsoft, eigen, args.timeout, gave_up)
            print(f"| {' | '.join(row)} |", flush=True)
    print()
    print(NOTES)
    print(
        f"wall time of the run: {time.perf_counter() - start:.0f} s; "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )


if __name__ == "__main__":
    main()
