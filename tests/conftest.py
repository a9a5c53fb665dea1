import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real captures and samples in ../shared/data (third-party; referenced, never copied)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bx_sample(shared_data) -> bytes:
    return (shared_data / "itch" / "bx_20191230_sample.itch").read_bytes()


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", default=False,
                     help="run the long soaks (make sim-long)")


def pytest_configure(config):
    config.addinivalue_line("markers", "sim: runs an HDL simulator (cocotb on Icarus/Verilator)")
    config.addinivalue_line("markers", "long: a long soak, only with --long (make sim-long)")
    config.addinivalue_line("markers", "fpga: runs the YoWASP Yosys/nextpnr tools "
                                       "(~20 s warm, ~4 min cold)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--long"):
        return
    skip_long = pytest.mark.skip(reason="long soak: run with `make sim-long`")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip_long)
