"""tickpath: what every side shares.

Wire formats defined once (:mod:`tickpath.protocol`), the engine interface
(:mod:`tickpath.engine`) and the golden models (:mod:`tickpath.model`). Pure Python: no
simulator, no sockets. The gateware (``hdl/`` → ``tickpath.hdl``), the host stack
(``host/`` → ``tickpath.host``) and the testbenches (``sim/`` → ``tickpath.sim``) import it.
"""
