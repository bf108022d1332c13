"""The topic table (contracts.protocol) and docs/protocol.md say the same, and the table holds together."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts import service_messages as sv

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
SCHEMA_NAMES = {id(v): k for mod in (m, d, sv) for k, v in vars(mod).items()
                if k.isupper() and isinstance(v, dict)}
SCHEMAS = [s for t in protocol.TABLE for s in (t.schema, *t.schemas) if s is not None]


def doc_rows() -> dict[str, tuple[str, ...]]:
    """The topic table of the page: pattern -> (sender, payloads, QoS, retained)."""
    rows = {}
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`forecourt/"):
            rows[cells[0].strip("`")] = tuple(cells[1:])
    return rows


@pytest.mark.parametrize("t", protocol.TABLE, ids=lambda t: t.name)
def test_every_topic_is_on_the_page_as_the_table_says(t: protocol.Topic) -> None:
    sender, payloads, qos, retained = doc_rows()[t.pattern]
    named = [SCHEMA_NAMES[id(s)] for s in (t.schema, *t.schemas) if s is not None] or ["raw bytes"]
    assert (sender, payloads, qos, retained) == (t.sender, ", ".join(named), str(t.qos),
                                                 "yes" if t.retain else "no")


def test_the_page_names_no_topic_the_table_lacks() -> None:
    assert set(doc_rows()) == {t.pattern for t in protocol.TABLE}


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: SCHEMA_NAMES[id(s)])
def test_every_field_is_described(schema: dict[str, object]) -> None:
    missing = [f for f in schema if f"`{f}`" not in DOC]
    assert missing == []


@pytest.mark.parametrize("op", sorted(sv.OPS))
def test_every_service_operation_is_on_the_page_with_its_fields(op: str) -> None:
    row = next((line for line in DOC.splitlines() if line.startswith(f"| `{op}` |")), "")
    missing = [f for f in (*sv.OPS[op], *sv.RESULTS[op]) if f"`{f}`" not in row]
    assert row and missing == []


def test_topics_are_unique_and_terminal_topics_carry_the_id_first() -> None:
    patterns = [t.pattern for t in protocol.TABLE]
    assert len(set(patterns)) == len(patterns)
    for t in protocol.TABLE:
        if t.sender == protocol.CLAIM or "{client}" in t.pattern:
            assert t.pattern.startswith(protocol.PREFIX + "/enroll/{client}/")
        else:
            assert t.pattern.startswith(protocol.PREFIX + "/terminal/{terminal}/")
            assert protocol.terminal_of(protocol.topic(t.name, terminal="T-0001")) == "T-0001"


def test_terminal_of_refuses_wildcards_and_other_trees() -> None:
    assert protocol.terminal_of("forecourt/v1/terminal/+/sales") is None
    assert protocol.terminal_of("forecourt/v1/terminal/#") is None
    assert protocol.terminal_of("forecourt/v1/enroll/claim-1/request") is None
    assert protocol.terminal_of("forecourt/v2/terminal/T-0001/sales") is None


def test_a_device_id_cannot_widen_a_topic() -> None:
    """An id is one topic level: no wildcard, separator or NUL gets into a concrete topic through it."""
    for bad in ("T/1", "+", "#", "T\x00", ""):
        assert m.decode_field(bad, "terminal", m.SALE) is None
