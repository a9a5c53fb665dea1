"""The kill switch's control file: how ``tickpath kill`` / ``tickpath unkill`` reach a running
order path (``tickpath orders run --control DIR`` today, the gateways' daemon later).

``DIR/kill.json`` holds the wanted state::

    {"global": false, "accounts": ["ACME"], "sessions": []}

The commands rewrite it atomically (temporary file, fsync, rename); a running path polls it (at
most once per millisecond of wall time, one ``stat``) and applies the difference as kill and
unkill actions, each journaled. The file outlives the process, so a killed account stays
killed across a restart until someone runs ``unkill``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

__all__ = ["KillState", "KillFile", "KILL_FILE"]

KILL_FILE = "kill.json"


@dataclasses.dataclass(frozen=True)
class KillState:
    global_: bool = False
    accounts: frozenset[str] = frozenset()
    sessions: frozenset[str] = frozenset()

    def as_json(self) -> dict:
        return {"global": self.global_, "accounts": sorted(self.accounts),
                "sessions": sorted(self.sessions)}


class KillFile:
    """Read, change and poll ``DIR/kill.json``."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = pathlib.Path(directory)
        self.path = self.directory / KILL_FILE
        self._seen: tuple[int, int] | None = None
        self._next_poll = 0

    def read(self) -> KillState:
        """The state in the file (no file: nothing killed). Raises ``ValueError`` for a file
        that is not a kill state."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return KillState()
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict) or set(obj) - {"global", "accounts", "sessions"}:
                raise ValueError("expected an object with global, accounts, sessions")
            g, a, s = obj.get("global", False), obj.get("accounts", []), obj.get("sessions", [])
            if not isinstance(g, bool) or not all(
                    isinstance(x, list) and all(isinstance(n, str) for n in x) for x in (a, s)):
                raise ValueError("global must be a boolean, accounts and sessions lists of names")
        except ValueError as e:
            raise ValueError(f"{self.path}: not a kill state: {e}") from None
        return KillState(g, frozenset(a), frozenset(s))

    def write(self, state: KillState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(KILL_FILE + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(state.as_json(), f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def change(self, *, kill: bool, account: str | None = None,
               session: str | None = None) -> KillState:
        """Kill (or unkill) one scope in the file; returns the new state."""
        state = self.read()
        if account is not None:
            accounts = state.accounts | {account} if kill else state.accounts - {account}
            state = dataclasses.replace(state, accounts=accounts)
        if session is not None:
            sessions = state.sessions | {session} if kill else state.sessions - {session}
            state = dataclasses.replace(state, sessions=sessions)
        if account is None and session is None:
            state = dataclasses.replace(state, global_=kill)
        self.write(state)
        return state

    def poll(self, now_ns: int | None = None) -> KillState | None:
        """The state if the file changed since the last poll (first poll: if it exists), else
        None; checks at most once per millisecond."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        if now < self._next_poll:
            return None
        self._next_poll = now + 1_000_000
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp == self._seen:
            return None
        self._seen = stamp
        return self.read()


def diff(old: KillState, new: KillState) -> list[tuple[bool, str | None, str | None]]:
    """``(kill, account, session)`` actions that take ``old`` to ``new``; unkills first."""
    out: list[tuple[bool, str | None, str | None]] = []
    if old.global_ and not new.global_:
        out.append((False, None, None))
    out += [(False, a, None) for a in sorted(old.accounts - new.accounts)]
    out += [(False, None, s) for s in sorted(old.sessions - new.sessions)]
    if new.global_ and not old.global_:
        out.append((True, None, None))
    out += [(True, a, None) for a in sorted(new.accounts - old.accounts)]
    out += [(True, None, s) for s in sorted(new.sessions - old.sessions)]
    return out
