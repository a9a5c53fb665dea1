"""Thin board tops: the board's clock, its UART and LEDs around one portable component.

``itch_decoder``: ITCH 5.0 in BinaryFILE framing (each message preceded by its length, two bytes
big-endian, as in ``../shared/data/itch/*.itch``) arrives over the UART at 115200 baud and goes
into :class:`tickpath.hdl.itch_decoder.ItchDecoder`. For every decoded event one byte goes back
over the UART: the message type (``A``, ``E``, ...) or ``!`` for a malformed message. The LEDs
show the low bits of the event count; the last LED lights (and stays lit) once anything went
wrong: a malformed message, a UART framing error, or a byte lost because the decoder was busy.
The decoder runs at the board's oscillator frequency (no PLL): the host link is the bottleneck.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.lib import io

from tickpath.hdl.build.uart import UARTReceiver, UARTTransmitter

__all__ = ["ItchUartTop", "TOPS"]


class ItchUartTop(Elaboratable):
    def __init__(self, board, *, baud: int = 115200):
        self.board = board          # a platforms.Board: which LEDs to drive
        self.baud = baud
        self.events = Signal(32)
        self.dropped = Signal(16)
        self.error = Signal()

    def elaborate(self, platform):
        from tickpath.hdl.itch_decoder import ItchDecoder
        from tickpath.protocol.feed import EventKind

        m = Module()
        clk_hz = platform.default_clk_frequency
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        leds = []
        for i, port in enumerate(self.board.leds(platform)):
            m.submodules[f"led_{i}"] = led = io.Buffer("o", port)
            leds.append(led.o)

        m.submodules.rx = rx = UARTReceiver(clk_hz=clk_hz, baud=self.baud)
        m.submodules.tx = tx = UARTTransmitter(clk_hz=clk_hz, baud=self.baud)
        m.submodules.decoder = decoder = ItchDecoder()
        m.d.comb += [rx.rx.eq(uart_rx.i), uart_tx.o.eq(tx.tx)]

        # BinaryFILE deframer: 2-byte big-endian length, then that many message bytes.
        header = Signal(range(3), init=2)   # length bytes still to come (0: in a message)
        remaining = Signal(16)
        in_body = Signal()
        m.d.comb += in_body.eq(header == 0)
        with m.If(rx.o_stream.valid):
            with m.If(header == 2):
                m.d.sync += [remaining[8:].eq(rx.o_stream.payload), header.eq(1)]
            with m.Elif(header == 1):
                m.d.sync += remaining[:8].eq(rx.o_stream.payload)
                # a zero length is an empty record: wait for the next length
                with m.If((remaining[8:] != 0) | (rx.o_stream.payload != 0)):
                    m.d.sync += header.eq(0)
                with m.Else():
                    m.d.sync += header.eq(2)
            with m.Else():
                m.d.sync += remaining.eq(remaining - 1)
                with m.If(remaining == 1):
                    m.d.sync += header.eq(2)
                with m.If(~decoder.i_stream.ready):
                    m.d.sync += self.dropped.eq(self.dropped + 1)

        # A sender that stalls for 10 ms resynchronises the framing: the next byte is a length
        # again (a half-sent message then merges into the next one and decodes as Malformed).
        idle = Signal(range(int(clk_hz // 100) + 1))
        with m.If(rx.o_stream.valid):
            m.d.sync += idle.eq(0)
        with m.Elif(idle == int(clk_hz // 100)):
            m.d.sync += header.eq(2)
        with m.Else():
            m.d.sync += idle.eq(idle + 1)

        m.d.comb += [
            decoder.i_stream.valid.eq(rx.o_stream.valid & in_body),
            decoder.i_stream.payload.data.eq(rx.o_stream.payload),
            decoder.i_stream.payload.last.eq(remaining == 1),
        ]

        # One byte back per event.
        event = decoder.o_stream.payload
        malformed = event.kind == EventKind.Malformed
        m.d.comb += [
            tx.i_stream.valid.eq(decoder.o_stream.valid),
            tx.i_stream.payload.eq(Mux(malformed, ord("!"), event.msg_type)),
            decoder.o_stream.ready.eq(tx.i_stream.ready),
        ]
        with m.If(decoder.o_stream.valid & decoder.o_stream.ready):
            m.d.sync += self.events.eq(self.events + 1)
            with m.If(malformed):
                m.d.sync += self.error.eq(1)
        with m.If((self.dropped != 0) | (rx.framing_errors != 0)):
            m.d.sync += self.error.eq(1)

        if leds:
            *count_leds, error_led = leds
            for i, led in enumerate(count_leds):
                m.d.comb += led.eq(self.events[i])
            m.d.comb += error_led.eq(self.error)
        return m


#: top name -> factory(board) for ``--top``.
TOPS = {
    "itch_decoder": ItchUartTop,
}
