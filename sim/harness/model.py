"""ctypes face of one built harness library (see ``harness.cpp`` for the C API)."""

from __future__ import annotations

import ctypes
import dataclasses
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["Harness", "PortInfo", "StreamResult", "WatchRecord"]

_u64p = ctypes.POINTER(ctypes.c_uint64)


@dataclasses.dataclass(frozen=True)
class PortInfo:
    index: int
    name: str
    width: int
    input: bool

    @property
    def nbytes(self) -> int:
        return (self.width + 7) // 8


@dataclasses.dataclass(frozen=True)
class StreamResult:
    """What :meth:`Harness.stream` did. ``data`` holds the first ``collected`` sink beats,
    ``stride`` bytes apart (little-endian payloads)."""
    sent: int
    taken: int
    cycles: int
    timed_out: bool
    data: bytes
    stride: int
    collected: int

    def payloads(self) -> list[int]:
        s = self.stride
        return [int.from_bytes(self.data[i * s:(i + 1) * s], "little")
                for i in range(self.collected)]


@dataclasses.dataclass(frozen=True)
class WatchRecord:
    cycle: int      # the harness cycle count just after the edge that made the change
    port: str
    value: int


def _load(path: pathlib.Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    vp, c_int = ctypes.c_void_p, ctypes.c_int
    sigs = {
        "h_nports": ([], c_int), "h_port_name": ([c_int], ctypes.c_char_p),
        "h_port_width": ([c_int], c_int), "h_port_input": ([c_int], c_int),
        "h_new": ([], vp), "h_free": ([vp], None), "h_cycle": ([vp], ctypes.c_uint64),
        "h_set": ([vp, c_int, vp], None), "h_get": ([vp, c_int, vp], None),
        "h_eval": ([vp], None), "h_step": ([vp, ctypes.c_uint64], None),
        "h_watch": ([vp, ctypes.POINTER(c_int), c_int], None),
        "h_record_size": ([vp], ctypes.c_size_t), "h_records_bytes": ([vp], ctypes.c_size_t),
        "h_records_take": ([vp, vp, ctypes.c_size_t], ctypes.c_size_t),
        "h_stream": ([vp, c_int, c_int, c_int, vp, ctypes.c_uint64, ctypes.c_uint64,
                      c_int, c_int, c_int, vp, ctypes.c_uint64, ctypes.c_uint64,
                      ctypes.c_uint64, ctypes.c_uint64, _u64p], None),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


class Harness:
    """One simulated instance of a built model. Port names are Amaranth's flattened member
    paths (``i_stream__payload``); ``clk`` is driven by :meth:`step` and :meth:`stream`.

    A cycle applies the inputs as set, settles the combinational logic with ``clk`` low, then
    makes the rising edge; :meth:`get` after :meth:`step` reads the values after that edge
    (call :meth:`eval` first to see combinational outputs of inputs set since).
    """

    def __init__(self, library: pathlib.Path):
        self.library = pathlib.Path(library)
        self._lib = lib = _load(self.library)
        self.ports: dict[str, PortInfo] = {}
        for i in range(lib.h_nports()):
            name = lib.h_port_name(i).decode()
            self.ports[name] = PortInfo(i, name, lib.h_port_width(i), bool(lib.h_port_input(i)))
        self._h = lib.h_new()
        self._watched: list[str] = []

    # --- life --------------------------------------------------------------------------------
    def close(self) -> None:
        if self._h:
            self._lib.h_free(self._h)
            self._h = None

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # --- ports -------------------------------------------------------------------------------
    def port(self, name: str) -> PortInfo:
        try:
            return self.ports[name]
        except KeyError:
            raise KeyError(f"no port {name!r}; ports: {', '.join(self.ports)}") from None

    def set(self, name: str, value: int | bytes) -> None:
        p = self.port(name)
        if not p.input:
            raise ValueError(f"{name} is an output")
        if isinstance(value, int):
            if value < 0 or value >> p.width:
                raise ValueError(f"{value} does not fit {name} ({p.width} bits)")
            raw = value.to_bytes(p.nbytes, "little")
        else:
            raw = bytes(value)
            if len(raw) != p.nbytes:
                raise ValueError(f"{name} takes {p.nbytes} bytes, not {len(raw)}")
        self._lib.h_set(self._h, p.index, raw)

    def get_bytes(self, name: str) -> bytes:
        p = self.port(name)
        out = ctypes.create_string_buffer(max(p.nbytes, 8))
        self._lib.h_get(self._h, p.index, out)
        return out.raw[:p.nbytes]

    def get(self, name: str) -> int:
        return int.from_bytes(self.get_bytes(name), "little")

    # --- time --------------------------------------------------------------------------------
    @property
    def cycle(self) -> int:
        return self._lib.h_cycle(self._h)

    def eval(self) -> None:
        self._lib.h_eval(self._h)

    def step(self, cycles: int = 1) -> None:
        self._lib.h_step(self._h, cycles)

    def reset(self, cycles: int = 2, port: str = "rst") -> None:
        """Hold the synchronous reset ``cycles`` cycles (every input else is zero)."""
        for p in self.ports.values():
            if p.input and p.name != "clk":
                self.set(p.name, 0)
        self.set(port, 1)
        self.step(cycles)
        self.set(port, 0)

    # --- watches -----------------------------------------------------------------------------
    def watch(self, names: Sequence[str]) -> None:
        """Record every change of these ports (after each edge) until the next call."""
        idx = [self.port(n).index for n in names]
        self._watched = list(names)
        arr = (ctypes.c_int * max(len(idx), 1))(*idx)
        self._lib.h_watch(self._h, arr, len(idx))

    def records(self) -> list[WatchRecord]:
        """The changes recorded since the last call (oldest first)."""
        size = self._lib.h_record_size(self._h)
        n = self._lib.h_records_bytes(self._h)
        buf = ctypes.create_string_buffer(max(n, 1))
        got = self._lib.h_records_take(self._h, buf, n)
        raw = buf.raw[:got]
        names = {self.ports[n].index: n for n in self._watched}
        out = []
        for at in range(0, got, size):
            port = names[int.from_bytes(raw[at + 8:at + 12], "little")]
            width = self.ports[port].nbytes
            out.append(WatchRecord(int.from_bytes(raw[at:at + 8], "little"), port,
                                   int.from_bytes(raw[at + 12:at + 12 + width], "little")))
        return out

    # --- bulk streaming ----------------------------------------------------------------------
    def stream(self, source: str | None, beats: bytes | np.ndarray | Iterable[int] = b"",
               sink: str | None = None, *, stride: int | None = None,
               collect: int | None = None, drain: int = 64,
               max_cycles: int | None = None) -> StreamResult:
        """Feed ``beats`` into stream ``source`` (``<source>__valid/ready/payload``) while
        taking every beat of stream ``sink`` (ready held high), all in C++.

        ``beats``: bytes (``stride`` bytes a beat, default the payload's size), a 1-D numpy
        array of unsigned integers (one beat each), or ints. ``collect``: keep up to this many
        sink beats (default: as many as beats in, plus 4096; 0 counts them only). Stops
        ``drain`` cycles after the last beat in and the last beat out, or at ``max_cycles``
        (default: 1000 + 100 per beat), which sets ``timed_out``.
        """
        lib, h = self._lib, self._h
        src = [-1, -1, -1]
        n_in, keep, buf_in = 0, None, None
        if source is not None:
            sp = self.port(f"{source}__payload")
            src = [self.port(f"{source}__valid").index, self.port(f"{source}__ready").index,
                   sp.index]
            if isinstance(beats, np.ndarray):
                if beats.ndim != 1 or beats.dtype.kind != "u":
                    raise ValueError("beats must be a 1-D array of unsigned integers")
                keep = np.ascontiguousarray(beats)
                if keep.dtype.itemsize < sp.nbytes:
                    raise ValueError(f"{sp.name} needs {sp.nbytes} bytes a beat, the array "
                                     f"has {keep.dtype.itemsize}")
                stride, n_in, buf_in = keep.dtype.itemsize, len(keep), keep.ctypes.data
            else:
                if not isinstance(beats, bytes | bytearray | memoryview):
                    beats = b"".join(int(b).to_bytes(sp.nbytes, "little") for b in beats)
                    stride = sp.nbytes
                keep = bytes(beats)
                stride = stride or sp.nbytes
                if stride < sp.nbytes or len(keep) % stride:
                    raise ValueError(f"{len(keep)} bytes are not whole beats of {stride}")
                n_in = len(keep) // stride
                buf_in = ctypes.cast(ctypes.c_char_p(keep), ctypes.c_void_p).value
        snk = [-1, -1, -1]
        out_stride = 1
        if sink is not None:
            kp = self.port(f"{sink}__payload")
            snk = [self.port(f"{sink}__valid").index, self.port(f"{sink}__ready").index,
                   kp.index]
            out_stride = kp.nbytes
        cap = n_in + 4096 if collect is None else collect
        out = ctypes.create_string_buffer(cap * out_stride) if (sink and cap) else None
        if max_cycles is None:
            max_cycles = 1000 + 100 * n_in
        result = (ctypes.c_uint64 * 4)()
        lib.h_stream(h, *src, buf_in, n_in, stride or 1, *snk, out, cap if out else 0,
                     out_stride, drain, max_cycles, result)
        sent, taken, cycles, timed_out = (int(x) for x in result)
        collected = min(taken, cap) if out is not None else 0
        data = out.raw[:collected * out_stride] if out is not None else b""
        return StreamResult(sent, taken, cycles, bool(timed_out), data, out_stride, collected)
