"""The broker's access control list, made from the wire contract (contracts.protocol.TABLE).

Mosquitto (mosquitto.conf(5), acl_file): with use_identity_as_username the user name is the client
certificate's CN. `topic` lines after a `user` line belong to that user and are checked first; `pattern`
lines apply to every user, with %u the user name, each the only text of its topic level. mosquitto 2.0.11
(src/security_default.c) checks a user's `deny` lines before its grants, then the patterns; the first
line that matches with the access asked grants, and nothing matching refuses. So:
- registry (CN=registry): read and write all of forecourt/v1. Its $share/... subscriptions need no line:
  2.0.11's acl_file grants every SUBSCRIBE and checks `read` against each message's own topic when it
  delivers it (tests/test_broker_security.py shows both);
- a terminal (CN = its device id): write the topics it sends, read those it receives, under its own id;
  nothing else, enrollment included;
- claim (CN=claim, in every technician's enrollment kit): write enrollment requests and read replies, and
  nothing else (denied the terminal topics its user name would reach through the patterns). Not tied to
  %c: a `pattern` line would serve terminals too, and the client id is the client's own choice anyway;
  what a reply carries is public or sealed to the enrolling device's key.
"""

from __future__ import annotations

from contracts.protocol import CLAIM, PREFIX, REGISTRY, TABLE, TERMINAL

__all__ = ["acl_text"]


def acl_text() -> str:
    """The ACL file's text (written beside the broker config; reloaded by mosquitto on SIGHUP)."""
    lines = ["# written by forecourt broker-config from contracts.protocol.TABLE (never hand-edited)",
             f"user {REGISTRY}",
             f"topic readwrite {PREFIX}/#",
             f"user {CLAIM}"]
    patterns = []
    for t in TABLE:
        terminal_topic, claim_topic = "{terminal}" in t.pattern, "{client}" in t.pattern
        if terminal_topic and t.sender in (TERMINAL, REGISTRY):
            access = "write" if t.sender == TERMINAL else "read"
            patterns.append(f"pattern {access} {t.pattern.format(terminal='%u')}")
        elif claim_topic and t.sender in (CLAIM, REGISTRY):
            access = "write" if t.sender == CLAIM else "read"
            lines.append(f"topic {access} {t.pattern.format(client='+')}")
        else:
            raise ValueError(f"topic {t.name}: no ACL rule for sender {t.sender} on {t.pattern}")
    lines += [f"topic deny {PREFIX}/terminal/#", "", *patterns]
    return "\n".join(lines) + "\n"
