"""The FIX 4.4 layer of routing (DESIGN 9): message builders and parsing (``messages``, pure),
the persistent session state (``store``), the session initiator the routing service drives
(``session``) and a simulated broker acceptor for local runs and tests (``broker``).
Encoding and parsing go through simplefix; the session rules (sequence numbers, resends,
PossDupFlag, heartbeats) are ours. See docs/fix.md."""
