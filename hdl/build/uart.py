"""A minimal 8N1 UART for the small boards' host link: receiver and transmitter as streams.

The receiver cannot be held off (a UART has no flow control here): it emits each byte for one
cycle with ``valid`` and ignores ``ready``; a byte whose ``valid`` is not taken is lost, and the
board top counts that. The transmitter takes a byte when idle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTReceiver", "UARTTransmitter"]


def _divisor(clk_hz: float, baud: int) -> int:
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise ValueError(f"clock {clk_hz} Hz is too slow for {baud} baud")
    if abs(clk_hz / divisor - baud) / baud > 0.02:
        raise ValueError(f"{baud} baud is more than 2% off at {clk_hz} Hz")
    return divisor


class UARTReceiver(wiring.Component):
    """``rx`` pin in, one byte out per received frame (``o_stream.valid`` for one cycle);
    ``framing_errors`` counts frames whose stop bit was low."""

    def __init__(self, *, clk_hz: float, baud: int = 115200):
        self._divisor = _divisor(clk_hz, baud)
        super().__init__({
            "rx":             In(1, init=1),
            "o_stream":       Out(stream.Signature(8, always_ready=True)),
            "framing_errors": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(self._divisor * 3 // 2 + 1))
        bits = Signal(range(10))
        shift = Signal(8)
        m.d.sync += self.o_stream.valid.eq(0)

        with m.FSM():
            with m.State("Idle"):
                with m.If(~rx):
                    # to the middle of bit 0: one and a half bit times after the start edge
                    m.d.sync += [timer.eq(self._divisor * 3 // 2 - 1), bits.eq(0)]
                    m.next = "Data"
            with m.State("Data"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(self._divisor - 1), bits.eq(bits + 1),
                                 shift.eq((shift >> 1) | (rx << 7))]
                    with m.If(bits == 7):
                        m.next = "Stop"
            with m.State("Stop"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        m.d.sync += [self.o_stream.payload.eq(shift), self.o_stream.valid.eq(1)]
                    with m.Else():
                        m.d.sync += self.framing_errors.eq(self.framing_errors + 1)
                    m.next = "Wait-Idle"
            with m.State("Wait-Idle"):
                with m.If(rx):
                    m.next = "Idle"
        return m


class UARTTransmitter(wiring.Component):
    """One byte in (taken when idle), the ``tx`` pin out."""

    def __init__(self, *, clk_hz: float, baud: int = 115200):
        self._divisor = _divisor(clk_hz, baud)
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "tx":       Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        frame = Signal(10, init=0x3FF)          # stop . data[7:0] . start, sent LSB first
        left = Signal(range(11))
        m.d.comb += [self.tx.eq(frame[0]), self.i_stream.ready.eq(left == 0)]
        with m.If(left == 0):
            with m.If(self.i_stream.valid):
                m.d.sync += [frame.eq((1 << 9) | (self.i_stream.payload << 1)),
                             left.eq(10), timer.eq(self._divisor - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [frame.eq((frame >> 1) | (1 << 9)), left.eq(left - 1),
                         timer.eq(self._divisor - 1)]
        return m
