"""Register maps: the one definition of a gateware block's host-visible registers.

A :class:`RegisterMap` lists 32-bit word registers by name, in address order. The gateware's
:class:`tickpath.hdl.regs.RegisterBank` is built from the map, and the host reads and writes by
name through :class:`RegisterClient` over whatever link carries the bus (the simulated-FPGA
harness, a UART, PCIe BAR0), so no address is ever written down twice.

Access: ``"r"`` status (the bank samples a gateware signal: counters, cycle, occupancy),
``"rw"`` control (the bank holds the value; it reads back), ``"w"`` command (a write pulses a
strobe beside the value, e.g. "commit this filter entry"; reads return 0). A value wider than 32
bits takes consecutive words, least significant first, so a 64-bit counter reads as two words;
the host reads the top word, the others, then the top again and retries if it moved (the bank
latches nothing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

__all__ = ["WORD_BITS", "ADDRESS_BITS", "Register", "RegisterMap", "RegisterClient",
           "RegisterError"]

WORD_BITS = 32
ADDRESS_BITS = 12          # 4096 words per block: enough for every counter and table window

ACCESS = ("r", "rw", "w")
MAX_WIDTH = 256


class RegisterError(ValueError):
    """A register name, address or value that the map does not allow."""


@dataclasses.dataclass(frozen=True)
class Register:
    name: str
    address: int            # word address of the least significant word
    width: int              # bits (1..MAX_WIDTH)
    access: str             # "r", "rw" or "w"
    reset: int = 0
    doc: str = ""

    @property
    def words(self) -> int:
        return -(-self.width // WORD_BITS)


class RegisterMap:
    """Registers in address order; ``fields`` is ``(name, width, access[, doc])`` or
    ``(name, width, access, doc, reset)`` tuples, packed from ``base`` word by word."""

    def __init__(self, name: str, fields: Iterable[tuple], *, base: int = 0):
        self.name = name
        regs: list[Register] = []
        address = base
        for spec in fields:
            rname, width, access, *rest = spec
            doc = rest[0] if rest else ""
            reset = rest[1] if len(rest) > 1 else 0
            if access not in ACCESS:
                raise RegisterError(f"{name}.{rname}: access must be one of {ACCESS}, "
                                    f"not {access!r}")
            if not 1 <= width <= MAX_WIDTH:
                raise RegisterError(f"{name}.{rname}: width must be 1..{MAX_WIDTH}, not {width}")
            if not 0 <= reset < 1 << width:
                raise RegisterError(f"{name}.{rname}: reset {reset} does not fit {width} bits")
            reg = Register(rname, address, width, access, reset, doc)
            regs.append(reg)
            address += reg.words
        if address > 1 << ADDRESS_BITS:
            raise RegisterError(f"{name}: {address} words do not fit {ADDRESS_BITS} address bits")
        self.registers: tuple[Register, ...] = tuple(regs)
        self.by_name: dict[str, Register] = {r.name: r for r in regs}
        if len(self.by_name) != len(regs):
            raise RegisterError(f"{name}: a register name appears twice")
        self.size = address - base

    def __getitem__(self, name: str) -> Register:
        try:
            return self.by_name[name]
        except KeyError:
            raise RegisterError(f"{self.name} has no register {name!r}; it has "
                                f"{', '.join(self.by_name)}") from None

    def __iter__(self):
        return iter(self.registers)

    def __len__(self) -> int:
        return len(self.registers)

    def table(self) -> str:
        """The map as a Markdown table (for docs and ``--help``)."""
        rows = ["| address | name | bits | access | meaning |", "|---|---|---|---|---|"]
        rows += [f"| 0x{r.address:03x} | `{r.name}` | {r.width} | {r.access} | {r.doc} |"
                 for r in self.registers]
        return "\n".join(rows)


class RegisterClient:
    """Read and write one block's registers by name over ``read(address) -> int`` and
    ``write(address, value)`` word functions (the link's)."""

    def __init__(self, regmap: RegisterMap, read: Callable[[int], int],
                 write: Callable[[int, int], None]):
        self.map = regmap
        self._read, self._write = read, write

    def read(self, name: str) -> int:
        reg = self.map[name]
        if reg.access == "w":
            raise RegisterError(f"{self.map.name}.{name} is write-only")
        if reg.words == 1:
            return self._read(reg.address) & ((1 << reg.width) - 1)
        top = reg.address + reg.words - 1
        for _ in range(4):          # a counter may carry between the words: re-read
            hi = self._read(top)
            value = 0
            for word in range(reg.words - 1):
                value |= self._read(reg.address + word) << (WORD_BITS * word)
            if self._read(top) == hi:
                return (hi << (WORD_BITS * (reg.words - 1)) | value) & ((1 << reg.width) - 1)
        raise RegisterError(f"{self.map.name}.{name} kept moving while read")

    def write(self, name: str, value: int) -> None:
        reg = self.map[name]
        if reg.access == "r":
            raise RegisterError(f"{self.map.name}.{name} is read-only")
        if not 0 <= value < 1 << reg.width:
            raise RegisterError(f"{self.map.name}.{name}: {value} does not fit {reg.width} bits")
        # high words first: a "w" register's strobe fires on its lowest word, last
        for word in reversed(range(reg.words)):
            self._write(reg.address + word, value >> (WORD_BITS * word) & 0xFFFF_FFFF)

    def read_all(self) -> dict[str, int]:
        """Every readable register by name."""
        return {r.name: self.read(r.name) for r in self.map if r.access != "w"}

    def write_many(self, values: Mapping[str, int]) -> None:
        for name, value in values.items():
            self.write(name, value)
