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
