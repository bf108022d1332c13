"""The broker's access control list, made from the wire contract (contracts.protocol.TABLE).

Mosquitto (mosquitto.conf(5), acl_file): with use_identity_as_username the user name is the client
certificate's CN. A `user` line starts the topics of one user; `pattern` lines apply to every user, with
%u the user name and %c the client id, each the only text of its topic level; a client may do what any
matching line grants, and a `deny` line of its user wins over every grant. So:
- registry (CN=registry): read and write all of forecourt/v1. Its $share/... subscriptions need no line:
  mosquitto 2.0.11's acl_file grants every SUBSCRIBE and checks `read` against each message's own topic
  when it delivers it (src/security_default.c; tests/test_broker_security.py shows both);
- a terminal (CN = its device id): write the topics it sends, read those it receives, under its own id;
- claim (CN=claim, shared by devices being enrolled): only the enrollment topics of its own client id;
  it is denied every terminal topic (the %u patterns would otherwise give it forecourt/v1/terminal/claim).
"""

from __future__ import annotations

from contracts.protocol import CLAIM, PREFIX, REGISTRY, TABLE, TERMINAL

__all__ = ["acl_text"]


def _pattern(template: str) -> str:
    return template.format(terminal="%u", client="%c")


def acl_text() -> str:
    """The ACL file's text (written beside the broker config; reloaded by mosquitto on SIGHUP)."""
    lines = ["# written by forecourt broker-config from contracts.protocol.TABLE (never hand-edited)",
             f"user {REGISTRY}",
             f"topic readwrite {PREFIX}/#",
             f"user {CLAIM}",
             f"topic deny {PREFIX}/terminal/#",
             ""]
    for t in TABLE:
        terminal_topic = "{terminal}" in t.pattern
        if terminal_topic and t.sender == TERMINAL:
            lines.append(f"pattern write {_pattern(t.pattern)}")
        elif terminal_topic and t.sender == REGISTRY:
            lines.append(f"pattern read {_pattern(t.pattern)}")
        elif t.sender == CLAIM:
            lines.append(f"pattern write {_pattern(t.pattern)}")
        elif "{client}" in t.pattern and t.sender == REGISTRY:     # the registry's answer to a claim
            lines.append(f"pattern read {_pattern(t.pattern)}")
        else:
            raise ValueError(f"topic {t.name}: no ACL rule for sender {t.sender} on {t.pattern}")
    return "\n".join(lines) + "\n"
