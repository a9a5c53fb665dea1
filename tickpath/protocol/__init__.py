"""Wire formats, each defined once: ITCH 5.0, MoldUDP64, SoupBinTCP, OUCH, the internal
order and event records, pcap framing."""
