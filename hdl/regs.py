"""Register bank: a block's host-visible registers on one simple word bus.

The registers are a :class:`tickpath.protocol.regmap.RegisterMap`; the bank makes one port per
register, named as in the map: ``In(width)`` for a status register (``"r"``: sampled when
read), ``Out(width)`` for control (``"rw"``: held, reads back) and command registers (``"w"``:
the value, plus ``<name>_stb`` high for the one cycle after the write of its lowest word).

The bus (:func:`bus_signature`, host side is the initiator): ``addr`` and ``w_data`` with
``w_stb`` write a word; ``r_stb`` reads one, ``r_data`` valid the next cycle (one cycle of read
latency, registered, so the bank's read mux is never on a critical path of the block it
serves). An address the map does not hold reads 0 and ignores writes.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tickpath.protocol.regmap import ADDRESS_BITS, WORD_BITS, RegisterMap

__all__ = ["bus_signature", "RegisterBank"]


def bus_signature() -> wiring.Signature:
    """The word bus, seen from its initiator (the host link)."""
    return wiring.Signature({
        "addr":   Out(ADDRESS_BITS),
        "r_stb":  Out(1),
        "r_data": In(WORD_BITS),
        "w_stb":  Out(1),
        "w_data": Out(WORD_BITS),
    })


class RegisterBank(wiring.Component):
    """Members: ``bus`` (``In(bus_signature())``) and one port per register of ``regmap``."""

    def __init__(self, regmap: RegisterMap):
        self._map = regmap
        members = {"bus": In(bus_signature())}
        for reg in regmap:
            if reg.access == "r":
                members[reg.name] = In(reg.width)
            else:
                members[reg.name] = Out(reg.width, init=reg.reset)
                if reg.access == "w":
                    members[f"{reg.name}_stb"] = Out(1)
        super().__init__(members)

    regmap = property(lambda self: self._map)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        for reg in self._map:
            if reg.access == "w":
                m.d.sync += getattr(self, f"{reg.name}_stb").eq(0)

        with m.If(bus.r_stb):
            m.d.sync += bus.r_data.eq(0)
            with m.Switch(bus.addr):
                for reg in self._map:
                    if reg.access == "w":
                        continue
                    value = getattr(self, reg.name)
                    for word in range(reg.words):
                        with m.Case(reg.address + word):
                            m.d.sync += bus.r_data.eq(
                                value[WORD_BITS * word:WORD_BITS * (word + 1)])

        with m.If(bus.w_stb):
            with m.Switch(bus.addr):
                for reg in self._map:
                    if reg.access == "r":
                        continue
                    value = getattr(self, reg.name)
                    for word in range(reg.words):
                        with m.Case(reg.address + word):
                            lo = WORD_BITS * word
                            hi = min(reg.width, lo + WORD_BITS)
                            m.d.sync += value[lo:hi].eq(bus.w_data[:hi - lo])
                            if reg.access == "w" and word == 0:
                                m.d.sync += getattr(self, f"{reg.name}_stb").eq(1)
        return m

