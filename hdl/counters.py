"""Event counters that count a cycle late.

A block's decision (which fault, which outcome) is often its deepest logic; driving the enable of
every bit of a 32-bit counter from it puts the counter's carry chain and fan-out behind that
logic. Here the decision sets one strobe flip-flop per counter, and the counter adds it the
cycle after: the count is exact, one cycle later.
"""

from amaranth.hdl import Signal

__all__ = ["late_counters"]


def late_counters(m, counters):
    """``counters``: name -> counter signal. Returns ``count(name)``, which counts one event
    in the calling cycle (from inside any ``If``/FSM state)."""
    strobes = {name: Signal(name=f"{name}_strobe") for name in counters}
    for name, strobe in strobes.items():
        counter = counters[name]
        m.d.sync += strobe.eq(0)
        with m.If(strobe):
            m.d.sync += counter.eq(counter + 1)

    def count(name):
        m.d.sync += strobes[name].eq(1)
    return count
