"""The gated matching path: :class:`~.risk_gate.RiskGate` in front of
:class:`~.engine.MatchingEngine`, one event stream out in action order.

Ref: :class:`tickpath.model.risk_gate.GatedMatchingModel` pins its events.

The gate hands the engine one action at a time and only checks the next one once the engine
is idle and has handed on every event of the last (``settled``), so the gate's ``rejected``
events and the engine's events never overlap: the output is a plain merge, in action order.
The gate sees each engine event as it leaves (``o_stream`` valid and ready), which is where
positions, open shares and last trades come from.

Cycles from an action offered on ``i_stream`` (idle path, ``o_stream`` ready) to its first
event out, measured by the cocotb bench (``sim/risk_gate``): resting accept 8 (the engine alone
7), crossing accept 5 (4), the gate's reject 1, the engine's reject 4 (3), cancel 5 (4),
priority-keeping replace 8 (6: a replace waits one cycle for its token table row). Between
actions the gate waits for the engine's last event to be tracked (2 cycles).
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.model.risk_gate import GATE_REASONS
from tickpath.protocol.records import EventRecord, OrderRecord

from ..regs import bus_signature
from .engine import MatchingEngine
from .risk_gate import RiskGate, counter_name

__all__ = ["GatedEngine"]


class GatedEngine(wiring.Component):
    """Risk gate + matching engine.

    Parameters
    ----------
    firms : int
        Firms with limits (the gate's ``firms``).
    **engine
        :class:`~.engine.MatchingEngine` parameters (``symbols``, ``capacity``, ``levels``,
        ``token_bits``, ``itch``...).

    Members
    -------
    i_stream : ``In(stream.Signature(OrderRecord))``
        Actions from the host.
    o_stream : ``Out(stream.Signature(EventRecord))``
        Every event (the gate's rejects and the engine's), in action order.
    itch_stream
        The engine's ITCH output, as the engine has it.
    bus : ``In(bus_signature())``
        The gate's registers.
    busy : ``Out(1)``
        Anything in flight (gate or engine).
    checked, now, deadman_tripped, rejects_* : the gate's.
    actions, rejects, fills : ``Out(32)``
        The engine's counters.
    """

    def __init__(self, *, firms=4, **engine):
        self.engine = MatchingEngine(**engine)
        self.gate = RiskGate(firms=firms, symbols=self.engine.symbols,
                             token_bits=self.engine.token_bits)
        members = {
            "i_stream":  In(stream.Signature(OrderRecord)),
            "o_stream":  Out(stream.Signature(EventRecord)),
            "itch_stream": Out(self.engine.signature.members["itch_stream"].signature),
            "bus":       In(bus_signature()),
            "busy":      Out(1),
            "checked":   Out(1),
            "now":       Out(32),
            "deadman_tripped": Out(1),
            "actions":   Out(32),
            "rejects":   Out(32),
            "fills":     Out(32),
        }
        for reason in GATE_REASONS:
            members[counter_name(reason)] = Out(32)
        super().__init__(members)

    firms = property(lambda self: self.gate.firms)
    regmap = property(lambda self: self.gate.regmap)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.gate = gate = self.gate
        wiring.connect(m, wiring.flipped(self.i_stream), gate.i_stream)
        wiring.connect(m, gate.o_stream, engine.i_stream)
        wiring.connect(m, wiring.flipped(self.bus), gate.bus)
        wiring.connect(m, wiring.flipped(self.itch_stream), engine.itch_stream)

        eng, rej, out = engine.o_stream, gate.r_stream, self.o_stream
        m.d.comb += [
            out.valid.eq(eng.valid | rej.valid),
            out.payload.eq(eng.payload),
            eng.ready.eq(out.ready),
            rej.ready.eq(out.ready),
            gate.track_valid.eq(eng.valid & out.ready),
            gate.track.eq(eng.payload),
            gate.settled.eq(~engine.busy & ~eng.valid),
            self.busy.eq(gate.busy | engine.busy | eng.valid),
            self.checked.eq(gate.checked),
            self.now.eq(gate.now),
            self.deadman_tripped.eq(gate.deadman_tripped),
            self.actions.eq(engine.actions),
            self.rejects.eq(engine.rejects),
            self.fills.eq(engine.fills),
        ]
        with m.If(rej.valid):
            m.d.comb += out.payload.eq(rej.payload)
        for reason in GATE_REASONS:
            name = counter_name(reason)
            m.d.comb += getattr(self, name).eq(getattr(gate, name))
        return m
