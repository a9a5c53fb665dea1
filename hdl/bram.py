"""Deep block RAM without an output multiplexer.

Yosys may map a memory deeper than one block RAM holds at the memory's width (512 x 36 on
ECP5, down to 16k x 1) as several blocks side by side in depth, with LUT multiplexers after
their outputs. ECP5 block RAM is slow to come out (about 5.8 ns clock-to-out without its output
register), so a multiplexer there costs the whole clock at 125 MHz. :class:`ColumnMemory` cuts
the word into columns instead, each as narrow as one block needs to hold the whole depth
(1k x 18 ... 16k x 1): every output bit comes straight from one block. It costs at most one
block more than the banked mapping.

Behaviour is that of one :class:`~amaranth.lib.memory.Memory` with one write port and one
synchronous, always-enabled read port (data one cycle after the address).
"""

from amaranth.hdl import Cat, Const, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["ColumnMemory", "column_width"]

#: ECP5 DP16KD depth -> widest data width at that depth (one block, no output multiplexer)
_BLOCK_WIDTHS = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


def column_width(depth: int) -> int:
    """The widest column one block holds at ``depth`` (1 for deeper than one block holds)."""
    for limit, width in _BLOCK_WIDTHS:
        if depth <= limit:
            return width
    return 1


class ColumnMemory(wiring.Component):
    """A memory of ``depth`` words of ``shape``, in columns that each map to whole blocks.

    Parameters
    ----------
    shape : shape-castable
    depth : int
    init : list or None
        Initial words (shape-castable constants, ``None`` for zero); shorter lists are padded.

    Members
    -------
    w_addr, w_data, w_en : ``In``
        Write port (``w_data`` of ``shape``).
    r_addr : ``In``
    r_data : ``Out(shape)``
        The word at the ``r_addr`` of the cycle before.
    """

    def __init__(self, *, shape, depth, init=None):
        self._depth = depth
        self._width = Shape.cast(shape).width
        abits = max(1, (depth - 1).bit_length())
        words = []
        for value in (init or []):
            if value is None:
                words.append(0)
            elif isinstance(value, int):
                words.append(value)
            else:
                words.append(Const.cast(shape.const(value)).value)
        self._init = words
        super().__init__({
            "w_addr": In(abits), "w_data": In(shape), "w_en": In(1),
            "r_addr": In(abits), "r_data": Out(shape),
        })

    def elaborate(self, platform):
        m = Module()
        width = self._width
        step = column_width(self._depth) if self._depth > 512 else width
        outs = []
        for n, lo in enumerate(range(0, width, step)):
            cw = min(step, width - lo)
            mask = (1 << cw) - 1
            col = Memory(shape=cw, depth=self._depth,
                         init=[(w >> lo) & mask for w in self._init])
            m.submodules[f"column{n}"] = col
            wp, rp = col.write_port(), col.read_port(domain="sync")
            out = Signal(cw, name=f"column{n}_data")
            m.d.comb += [
                wp.addr.eq(self.w_addr), wp.data.eq(self.w_data.as_value()[lo:lo + cw]),
                wp.en.eq(self.w_en),
                rp.addr.eq(self.r_addr), out.eq(rp.data),
            ]
            outs.append(out)
        m.d.comb += self.r_data.eq(Cat(*outs))
        return m
