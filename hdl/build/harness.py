"""Out-of-context harness: a component with hundreds of port bits on a device with three pins.

Every input port bit is driven by one flip-flop of a shift chain fed from the ``sin`` pin, and
every output port bit is folded into a compaction chain (``c[k] <= c[k-1] ^ o[3k] ^ o[3k+1] ^
o[3k+2]``, one 4-input LUT and one flip-flop per three output bits) that ends on the ``sout`` pin.
So every port bit stays observable (synthesis cannot trim the component) and every path through
the component runs register to register, as it would inside a larger design. The harness costs
``in_bits + ceil(out_bits / 3)`` flip-flops and about ``ceil(out_bits / 3)`` LUTs; the report
carries both counts beside the measured totals.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import io, wiring

__all__ = ["OutOfContext", "port_bits"]


def port_bits(component: wiring.Component) -> tuple[list[Value], list[Value]]:
    """The component's (input, output) port values, in signature order."""
    inputs, outputs = [], []
    for _path, member, value in component.signature.flatten(component):
        (inputs if member.flow == wiring.In else outputs).append(Value.cast(value))
    return inputs, outputs


class OutOfContext(Elaboratable):
    """Wrap ``component`` for a device platform made by :func:`.platforms.device_platform`."""

    def __init__(self, component: wiring.Component):
        self.component = component
        inputs, outputs = port_bits(component)
        self.in_bits = sum(len(v) for v in inputs)
        self.out_bits = sum(len(v) for v in outputs)
        self.chain_bits = max(1, -(-self.out_bits // 3))

    @property
    def harness_ffs(self) -> int:
        """Flip-flops the harness adds: input chain, compaction chain, the input pin's register."""
        return self.in_bits + self.chain_bits + 1

    @property
    def harness_luts(self) -> int:
        """LUTs the compaction chain needs at most (one per three output bits)."""
        return self.chain_bits

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.component
        inputs, outputs = port_bits(dut)

        m.submodules.sin = sin = io.Buffer("i", platform.request("sin", 0, dir="-"))
        m.submodules.sout = sout = io.Buffer("o", platform.request("sout", 0, dir="-"))
        serial_in = Signal()
        m.d.sync += serial_in.eq(sin.i)

        if self.in_bits:
            chain = Signal(self.in_bits)
            m.d.sync += chain.eq(Cat(serial_in, chain[:-1]))
            m.d.comb += Cat(*inputs).eq(chain)

        flat = Cat(*outputs) if outputs else Value.cast(0)
        compact = Signal(self.chain_bits)
        for k in range(self.chain_bits):
            previous = serial_in if k == 0 else compact[k - 1]
            group = flat[3 * k:3 * k + 3]
            m.d.sync += compact[k].eq(previous ^ group.xor())
        m.d.comb += sout.o.eq(compact[-1])
        return m
