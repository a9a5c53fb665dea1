"""The host order path (:mod:`.path`): risk, audit journal, engine and positions joined; the
kill switch's control file (:mod:`.control`)."""

from .control import KillFile, KillState
from .path import RISK_CODES, KillReport, MemoryJournal, OpenOrder, OrderPath, Submission

__all__ = ["OrderPath", "Submission", "OpenOrder", "KillReport", "MemoryJournal", "RISK_CODES",
           "KillFile", "KillState"]
