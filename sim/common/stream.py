"""cocotb driver and monitor for Amaranth ``stream.Signature`` ports.

Amaranth names a stream member ``<prefix>__payload`` / ``__valid`` / ``__ready`` and flattens a
layout payload into one vector (LSB-first). Payloads here are dicts keyed by the layout's
fields, converted with a packer generated from the layout (``Layout.const`` per beat is too
slow for hundreds of thousands of beats), or plain ints when the payload is a plain shape.

Timing: each cycle the driver and monitor write just after the rising edge and sample in the
ReadOnly phase, so a transfer seen there happens at the next edge on every simulator.

The monitor checks the stream rules of ``amaranth.lib.stream`` every cycle: a source that has
raised ``valid`` keeps it high, and its payload unchanged, until the beat is taken. A break
raises :class:`StreamRuleError` naming the stream and the cycle.
"""

import random
from collections.abc import Callable, Iterable
from typing import Any

import cocotb
from amaranth.lib import data
from amaranth.lib import enum as amaranth_enum
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamDriver", "StreamMonitor", "StreamRuleError", "make_packer", "make_unpacker"]


class StreamRuleError(AssertionError):
    """A source withdrew ``valid`` or changed its payload before the beat was taken."""

Payload = dict[str, Any] | int


def _fields(layout):
    out = []
    for name, field in data.Layout.cast(layout):
        shape = field.shape
        try:
            data.Layout.cast(shape)
        except TypeError:
            pass
        else:
            raise NotImplementedError(f"nested layout field {name!r}: flatten it or extend this")
        is_enum = isinstance(shape, type) and issubclass(shape, amaranth_enum.Enum)
        out.append((name, field.offset, (1 << field.width) - 1, shape if is_enum else None))
    return out


def make_packer(layout) -> Callable[[Payload], int]:
    """dict -> payload bits for a flat layout (ints pass through). Values must fit."""
    if layout is None or isinstance(layout, int):
        return int
    fields = _fields(layout)

    def pack(item: Payload) -> int:
        if isinstance(item, int):
            return item
        bits = 0
        for name, offset, mask, enum_shape in fields:
            value = item.get(name, 0)
            if enum_shape is not None:
                value = enum_shape(value).value
            if value & ~mask:
                raise ValueError(f"{name}={value} does not fit {mask.bit_length()} bits")
            bits |= value << offset
        return bits
    return pack


def make_unpacker(layout) -> Callable[[int], Payload]:
    """payload bits -> dict for a flat layout (enum fields as their members)."""
    if layout is None or isinstance(layout, int):
        return int
    fields = _fields(layout)

    def unpack(bits: int) -> dict[str, Any]:
        out = {}
        for name, offset, mask, enum_shape in fields:
            value = (bits >> offset) & mask
            out[name] = enum_shape(value) if enum_shape is not None else value
        return out
    return unpack


def _is_high(handle) -> bool:
    return handle.value == 1


class StreamDriver:
    """Drive ``<prefix>__payload/valid`` and honour ``<prefix>__ready`` of ``dut``.

    ``valid_probability`` < 1 inserts random idle cycles before beats (seeded ``rng``).
    ``sent_at`` holds, for each payload sent, the sim time (ns) of the cycle it was taken in
    (the edge that opened that cycle; the transfer happens at the next one).
    """

    def __init__(self, dut, prefix: str, layout, clk, *, rng: random.Random | None = None,
                 valid_probability: float = 1.0):
        self._payload = getattr(dut, f"{prefix}__payload")
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready", None)    # absent: always ready
        self._clk = clk
        self._pack = make_packer(layout)
        self._rng = rng or random.Random(0)
        self.valid_probability = valid_probability
        self.sent_at: list[float] = []
        self._valid.value = 0

    async def send(self, items: Iterable[Payload], *,
                   on_sent: Callable[[int], None] | None = None) -> None:
        """Send ``items`` in order; returns after the edge that takes the last one.
        ``on_sent(i)`` runs when item ``i`` has been taken."""
        edge, settled = RisingEdge(self._clk), ReadOnly()
        for i, item in enumerate(items):
            bits = self._pack(item)
            if self.valid_probability < 1.0:
                while self._rng.random() >= self.valid_probability:
                    self._valid.value = 0
                    await edge
            self._payload.value = bits
            self._valid.value = 1
            while True:
                await settled
                taken = self._ready is None or _is_high(self._ready)
                if taken:
                    self.sent_at.append(get_sim_time("ns"))
                await edge
                if taken:
                    break
            if on_sent is not None:
                on_sent(i)
        self._valid.value = 0


class StreamMonitor:
    """Collect payloads of ``<prefix>__payload`` on every valid & ready; drive ``__ready``
    low at random with ``ready_probability`` < 1 (seeded ``rng``).

    ``received`` holds the payloads (dicts for a layout), ``received_at`` the sim time (ns) of
    the cycle each was taken in (as ``StreamDriver.sent_at``); ``callback(payload)`` runs on
    each.
    """

    def __init__(self, dut, prefix: str, layout, clk, *, rng: random.Random | None = None,
                 ready_probability: float = 1.0,
                 callback: Callable[[Payload], None] | None = None):
        self._payload = getattr(dut, f"{prefix}__payload")
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready", None)
        self._clk = clk
        self._unpack = make_unpacker(layout)
        self._rng = rng or random.Random(0)
        self.ready_probability = ready_probability
        self.callback = callback
        self.received: list[Payload] = []
        self.received_at: list[float] = []
        self._task = None
        if self._ready is not None:
            self._ready.value = 0

    def start(self) -> None:
        if self._task is None:
            self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        edge, settled = RisingEdge(self._clk), ReadOnly()
        rng, ready = self._rng, self._ready
        if ready is not None and self.ready_probability >= 1.0:
            ready.value = 1
        held = None             # payload of a beat offered and not taken last cycle
        while True:
            if ready is not None and self.ready_probability < 1.0:
                ready.value = int(rng.random() < self.ready_probability)
            await settled
            valid = _is_high(self._valid)
            if held is not None:
                if not valid:
                    raise StreamRuleError(f"{self._valid._name}: valid withdrawn before the "
                                          f"beat was taken (at {get_sim_time('ns')} ns)")
                if self._payload.value.to_unsigned() != held:
                    raise StreamRuleError(f"{self._payload._name}: payload changed while "
                                          f"waiting for ready (at {get_sim_time('ns')} ns)")
            held = None
            if valid and ready is not None and not _is_high(ready):
                held = self._payload.value.to_unsigned()
            if valid and (ready is None or _is_high(ready)):
                item = self._unpack(self._payload.value.to_unsigned())
                self.received.append(item)
                self.received_at.append(get_sim_time("ns"))
                if self.callback is not None:
                    self.callback(item)
            await edge
