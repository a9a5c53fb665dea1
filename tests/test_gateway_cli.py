"""``tickpath gateway run`` as a child process (own process group, killed in teardown): it
listens on 127.0.0.1, takes a FIX logon and an OUCH login, reloads its risk file on SIGHUP
(journaled), and stops on SIGTERM with an intact journal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

from tickpath.host.audit import Kind, iter_records, verify
from tickpath.protocol import soupbintcp as soup
from tickpath.protocol.fix42 import FixFramer, encode, utc_timestamp


def test_gateway_run_serves_fix_and_ouch(tmp_path):
    risk = tmp_path / "risk.toml"
    risk.write_text("[global]\nmax_order_shares = 100\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickpath.host.commands.gateway", "run",
         "--fix", "127.0.0.1:0", "--fix-session", "C1:ACC1:F1",
         "--ouch", "127.0.0.1:0", "--ouch-user", "U1:pw:F1", "--store", str(tmp_path),
         "--journal", str(tmp_path / "journal"), "--risk", str(risk), "--duration", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "listening"
        with socket.create_connection(("127.0.0.1", ready["fix_port"]), timeout=5) as s:
            s.sendall(encode("A", [(49, "C1"), (56, "TICKPATH"), (34, 1),
                                   (52, utc_timestamp())], [(98, 0), (108, 30)]))
            msgs = FixFramer().feed(s.recv(4096))
            assert msgs[0].msg_type == "A"
        with socket.create_connection(("127.0.0.1", ready["ouch_port"]), timeout=5) as s:
            s.sendall(soup.LoginRequest("U1", "pw", "", 1).encode())
            packets = soup.SoupFramer().feed(s.recv(4096))
            assert isinstance(packets[0], soup.LoginAccepted)
        risk.write_text("[global]\nmax_order_shares = 200\n")
        proc.send_signal(signal.SIGHUP)
        reload = json.loads(proc.stdout.readline())
        assert reload["event"] == "reload" and reload["ok"] and reload["source"] == "sighup"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        stopped = json.loads(out.splitlines()[-1])
        assert stopped["gateway"]["reloads"] == 1
        assert verify(tmp_path / "journal").ok
        configs = [r.detail for r in iter_records(tmp_path / "journal") if r.kind == Kind.CONFIG]
        assert len(configs) == 2 and configs[0]["digest"] != configs[1]["digest"]
        assert stopped["fix"]["logons"] == 1 and stopped["ouch"]["logins"] == 1, err
        assert (tmp_path / "fix" / "C1.seq").exists() and (tmp_path / "ouch" / "U1.soup").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
