"""Wire formats, each defined once: ITCH 5.0, MoldUDP64, SoupBinTCP, OUCH, FIX 4.2, the internal
order and event records, pcap framing."""
