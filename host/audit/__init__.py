"""The audit journal: an append-only, hash-chained, group-committed record of every order,
acknowledgement, fill, cancel, reject, risk decision, kill switch and configuration change.

The format is documented in :mod:`.format`, the writer in :mod:`.journal`. Commands:
``tickpath audit verify|replay|tail|export`` (:mod:`tickpath.host.commands.audit`). Figures:
``python -m tickpath.host.audit.measure``.
"""

from .format import Checkpoint, FormatError, Kind, Record
from .journal import Journal, JournalCorrupt, JournalError
from .reader import VerifyReport, iter_records, verify
from .replay import replay

__all__ = [
    "Journal", "JournalError", "JournalCorrupt", "Kind", "Record", "Checkpoint", "FormatError",
    "VerifyReport", "verify", "iter_records", "replay",
]
