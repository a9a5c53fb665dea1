"""Host market data: the MoldUDP64 session (sequencing, A/B arbitration, gap recovery), the
publisher with its re-request server, the listener that joins them to a capture backend, and a
deterministic lossy relay for tests. See ``tickpath feed publish|listen``."""

from .listener import RETRANSMISSION, BinaryFileSink, Listener, ListenResult, RerequestClient
from .publisher import (
    Publisher,
    PublisherConfig,
    PublisherStats,
    RerequestServer,
    RetransmissionStore,
    ServerStats,
    multicast_sender,
)
from .relay import (
    LossyRelay,
    RelayStats,
    RerequestRelay,
    RerequestRelayStats,
    multicast_receiver,
)
from .session import MoldSession, SessionConfig, SessionStats

__all__ = [
    "MoldSession", "SessionConfig", "SessionStats",
    "Publisher", "PublisherConfig", "PublisherStats", "RerequestServer", "RetransmissionStore",
    "ServerStats", "multicast_sender",
    "Listener", "ListenResult", "RerequestClient", "BinaryFileSink", "RETRANSMISSION",
    "LossyRelay", "RelayStats", "RerequestRelay", "RerequestRelayStats", "multicast_receiver",
]
