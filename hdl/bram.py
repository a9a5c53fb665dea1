"""Deep block RAM without an output multiplexer, optionally with the block's output register.

Yosys may map a memory deeper than one block RAM holds at the memory's width (512 x 36 on
ECP5, down to 16k x 1) as several blocks side by side in depth, with LUT multiplexers after
their outputs. ECP5 block RAM is slow to come out (about 5.8 ns clock-to-out without its output
register), so a multiplexer there costs the whole clock at 125 MHz. :class:`ColumnMemory` cuts
the word into columns instead, each as narrow as one block needs to hold the whole depth
(1k x 18 ... 16k x 1): every output bit comes straight from one block. It costs at most one
block more than the banked mapping.

Even with nothing after it, the block's 5.8 ns plus the route to the next flip-flop is more
than 8 ns. The block's own output register (``REGMODE="OUTREG"``) comes out in about 1 ns, but
Yosys does not infer it on ECP5. ``registered=True`` asks for that register: on an ECP5
platform every column is then a ``DP16KD`` instance with ``OUTREG`` (and its output enable);
elsewhere, and in simulation, a memory and a flip-flop with the same behaviour. The pins are
driven as Yosys's own ``$__DP16KD_`` / ``$__PDPW16KD_`` mapping drives them (word address in the
top bits of ``AD``, write data on ``DI`` from bit 0, 36-bit words on both ports' pins);
``tests/test_bram.py`` checks the instance path against the behavioural model in
``sim/models/dp16kd.v`` and that against the plain memory.

Behaviour: one write port; one synchronous read port, always enabled: ``r_data`` is the word at
the ``r_addr`` of the cycle before, or with ``registered`` the word at the ``r_addr`` of two
cycles before, loaded into the output register on the cycles ``r_out_en`` is high. A read of the
word being written in the same cycle is undefined in the instance path (the other path returns
the old word): a design must not use it.
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["ColumnMemory", "column_width", "primitive_width"]

#: ECP5 DP16KD depth -> widest data width at that depth (one block, no output multiplexer)
_BLOCK_WIDTHS = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
#: DP16KD data width -> the lowest address pin of the word address (``AD[13:shift]``)
_ADDRESS_SHIFT = {36: 5, 18: 4, 9: 3, 4: 2, 2: 1, 1: 0}
#: DP16KD data width -> words per block
_MODE_DEPTH = {1: 16384, 2: 8192, 4: 4096, 9: 2048, 18: 1024, 36: 512}


def column_width(depth: int) -> int:
    """The widest column one block holds at ``depth`` (1 for deeper than one block holds)."""
    for limit, width in _BLOCK_WIDTHS:
        if depth <= limit:
            return width
    return 1


def primitive_width(depth: int, width: int) -> int:
    """The DP16KD data width for a column of ``width`` bits and ``depth`` words: the narrowest
    mode that holds it."""
    for mode, limit in _MODE_DEPTH.items():
        if width <= mode and depth <= limit:
            return mode
    raise ValueError(f"no DP16KD mode holds {depth} words of {width} bits")


class ColumnMemory(wiring.Component):
    """A memory of ``depth`` words of ``shape``, in columns that each map to whole blocks.

    Parameters
    ----------
    shape : shape-castable
    depth : int
    init : list or None
        Initial words (shape-castable constants, ``None`` for zero); shorter lists are padded.
        The ``DP16KD`` path is taken only without one (its initial-value layout per mode is
        not modelled here).
    registered : bool
        Read data through the block's output register (two cycles from address to data).

    Members
    -------
    w_addr, w_data, w_en : ``In``
        Write port (``w_data`` of ``shape``).
    r_addr : ``In``
    r_out_en : ``In(1, init=1)``
        With ``registered``: the output register loads on the cycles this is high.
    r_data : ``Out(shape)``
        The word at the ``r_addr`` of the cycle before (two cycles before with ``registered``).
    """

    def __init__(self, *, shape, depth, init=None, registered=False):
        self._depth = depth
        self._width = Shape.cast(shape).width
        self._registered = registered
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
            "r_addr": In(abits), "r_out_en": In(1, init=1), "r_data": Out(shape),
        })

    registered = property(lambda self: self._registered)

    def _columns(self):
        """(low bit, width) of each column."""
        step = column_width(self._depth) if self._depth > 512 else self._width
        return [(lo, min(step, self._width - lo)) for lo in range(0, self._width, step)]

    def elaborate(self, platform):
        m = Module()
        on_ecp5 = (self._registered and getattr(platform, "family", None) == "ecp5"
                   and not any(self._init))
        outs = []
        for n, (lo, cw) in enumerate(self._columns()):
            out = Signal(cw, name=f"column{n}_data")
            if on_ecp5:
                self._ecp5_column(m, n, lo, cw, out)
            else:
                self._memory_column(m, n, lo, cw, out)
            outs.append(out)
        m.d.comb += self.r_data.eq(Cat(*outs))
        return m

    def _memory_column(self, m, n, lo, cw, out):
        mask = (1 << cw) - 1
        col = Memory(shape=cw, depth=self._depth, init=[(w >> lo) & mask for w in self._init])
        m.submodules[f"column{n}"] = col
        wp, rp = col.write_port(), col.read_port(domain="sync")
        m.d.comb += [
            wp.addr.eq(self.w_addr), wp.data.eq(Value.cast(self.w_data)[lo:lo + cw]),
            wp.en.eq(self.w_en), rp.addr.eq(self.r_addr),
        ]
        if self._registered:
            # reset-less, as the block's own register: no reset term in front of it
            data_r = Signal(cw, name=f"column{n}_reg", reset_less=True)
            with m.If(self.r_out_en):
                m.d.sync += data_r.eq(rp.data)
            m.d.comb += out.eq(data_r)
        else:
            m.d.comb += out.eq(rp.data)

    def _ecp5_column(self, m, n, lo, cw, out):
        """Columns of more than 36 bits at 512 words or less take several blocks side by side."""
        for k, blo in enumerate(range(0, cw, 36)):
            bw = min(36, cw - blo)
            mode = primitive_width(self._depth, bw)
            data = Value.cast(self.w_data)[lo + blo:lo + blo + bw]
            m.submodules[f"column{n}_block{k}"] = _dp16kd(
                mode, self.w_addr, data, self.w_en, self.r_addr, self.r_out_en,
                out[blo:blo + bw])


def _address_pins(port, addr, mode, enables):
    """``AD{port}0..13``: the word address in ``AD[13:shift]``, below it ``enables`` where the
    mode has byte enables, else zero."""
    shift = _ADDRESS_SHIFT[mode]
    pins = {}
    for bit in range(14):
        if bit >= shift:
            value = addr[bit - shift] if bit - shift < len(addr) else Const(0)
        elif (mode == 36 and bit < 4) or (mode == 18 and bit < 2):
            value = enables
        else:
            value = Const(0)
        pins[f"i_AD{port}{bit}"] = value
    return pins


def _dp16kd(mode, w_addr, w_data, w_en, r_addr, r_out_en, r_data):
    """One DP16KD: writes on port A, reads on port B through the output register. In the
    36-bit mode the word is spread over both ports' data pins (bits 0-17 on A, 18-35 on B)
    and both output registers are on (same clock)."""
    wide = mode == 36
    di = Signal(36 if wide else 18)
    do = Signal(36 if wide else 18)
    ports = {
        "i_CLKA": ClockSignal("sync"), "i_CLKB": ClockSignal("sync"),
        # 36-bit: WEA high and the write enable on the byte enables, AD[3:0] (as Yosys's own
        # mapping drives it); otherwise WEA, with the byte enables of 18 bits all on
        "i_CEA": Const(1), "i_WEA": Const(1) if wide else w_en,
        "i_CEB": Const(1), "i_WEB": Const(0),
        "i_OCEA": r_out_en, "i_OCEB": r_out_en,
        "i_RSTA": Const(0), "i_RSTB": Const(0),
    }
    for pin in range(3):
        ports[f"i_CSA{pin}"] = Const(0)
        ports[f"i_CSB{pin}"] = Const(0)
    ports.update(_address_pins("A", w_addr, mode, w_en if wide else Const(1)))
    ports.update(_address_pins("B", r_addr, mode, Const(0)))
    for pin in range(18):
        ports[f"i_DIA{pin}"] = di[pin]
        ports[f"i_DIB{pin}"] = di[18 + pin] if wide else Const(0)
        ports[f"o_DOA{pin}"] = do[pin] if wide else Signal(name=f"doa{pin}_unused")
        ports[f"o_DOB{pin}"] = do[18 + pin] if wide else do[pin]
    regmode_a = "OUTREG" if wide else "NOREG"
    block = Instance("DP16KD",
                     p_DATA_WIDTH_A=mode, p_DATA_WIDTH_B=mode,
                     p_REGMODE_A=regmode_a, p_REGMODE_B="OUTREG",
                     p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                     p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL",
                     p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC", p_GSR="AUTO",
                     **ports)
    m = Module()
    m.submodules.block = block
    m.d.comb += [di.eq(w_data), r_data.eq(do)]
    return m
