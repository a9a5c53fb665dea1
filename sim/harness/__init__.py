"""Fast simulated FPGA: an Amaranth component as a ``verilator --cc`` model in a shared library.

Ref: Verilator 5 manual, "Connecting to C++" (``--cc``, ``--build``, the model's port members);
../shared/docs/TOOLCHAIN.md (the wheel's ``verilated.mk`` needs ``python`` and its ``bin`` on
PATH; one-file models because of the wheel's empty precompiled-header flag).

:func:`build` exports the component to Verilog, builds it with ``harness.cpp`` (a small C API)
into ``build/harness/<name>-<hash>/`` keyed by the Verilog, the harness source and the Verilator
arguments, and returns a :class:`Harness` loaded through ``ctypes``: reset, step, set/get any
port by name (wide ports as little-endian bytes or ``int``), watch ports for changes, and
:meth:`Harness.stream`, which feeds a whole buffer of beats into one stream while taking every
beat of another, the valid/ready handshakes done in C++.

:class:`SimEngine` (:mod:`.matching`) is the gateware matching engine on it, behind the host's
:class:`tickpath.engine.Engine` interface (``tickpath match --engine sim``).
"""

from tickpath.sim.harness.build import HarnessError, build, build_verilog
from tickpath.sim.harness.matching import SimEngine, SimEngineError, SimEngineLimit
from tickpath.sim.harness.model import Harness, PortInfo, StreamResult, WatchRecord

__all__ = ["build", "build_verilog", "Harness", "HarnessError", "PortInfo", "StreamResult",
           "WatchRecord", "SimEngine", "SimEngineError", "SimEngineLimit"]
