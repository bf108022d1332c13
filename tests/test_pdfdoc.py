"""registry.pdfdoc: the PDF read back with pypdf -- its text, Cyrillic and Spanish letters, the header on
every page, page numbers, a chart's labels and values, landscape for a wide table; and a fleet customer's
statement made with it (registry.fleet.statement_pdf)."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from contracts.errors import ConfigError, MissingComponent
from registry.db import open_database
from registry.fleet import admin, cards
from registry.fleet.statement_pdf import StatementLabels, statement_pdf
from registry.fleet.statements import statement
from registry.keys import load_or_create_keys
from registry.models import Station, Transaction
from registry.pdfdoc import Section, table_pdf

HEADER = ["Дата", "Card", "Estación", "Litres", "Amount"]


def read(data: bytes) -> PdfReader:
    assert data.startswith(b"%PDF-")
    return PdfReader(io.BytesIO(data))


def rows(n: int) -> list[list[str]]:
    return [[f"2026-11-{i % 30 + 1:02d}", f"707700******{i:04d}", "Станция Юг" if i % 2 else "Peñón Norte",
             f"{i}.50", f"{i * 3}.25"] for i in range(n)]


def test_text_and_cyrillic_come_back() -> None:
    pdf = read(table_pdf("Выписка за ноябрь", "Cliente: Peñas S.L.", HEADER, rows(3)))
    assert len(pdf.pages) == 1
    text = pdf.pages[0].extract_text()
    for expected in ("Выписка за ноябрь", "Cliente: Peñas S.L.", "Дата", "Estación", "Станция Юг",
                     "Peñón Norte", "707700******0002", "6.25", "1 / 1"):
        assert expected in text
    assert pdf.metadata is not None and pdf.metadata.title == "Выписка за ноябрь"
    page = pdf.pages[0]
    assert round(float(page.mediabox.width)) == 595 and round(float(page.mediabox.height)) == 842   # A4


def test_many_rows_make_pages_each_with_the_header() -> None:
    pdf = read(table_pdf("Turnover", "2026", HEADER, rows(150)))
    assert len(pdf.pages) >= 3
    texts = [p.extract_text() for p in pdf.pages]
    for number, text in enumerate(texts, 1):
        assert "Дата" in text and "Estación" in text            # the header repeated
        assert f"{number} / {len(texts)}" in text               # page numbers
    every = "\n".join(texts)
    assert all(f"707700******{i:04d}" in every for i in range(150))
    assert "Turnover" in texts[-1]                              # the footer names the document


def test_a_chart_is_drawn_before_the_table() -> None:
    chart = (["Станция Юг", "S2"], [123456, 5000], "money")
    data = table_pdf("Turnover", "", ["Station", "Amount"], [["Станция Юг", "1234.56"], ["S2", "50.00"]],
                     chart=chart)
    text = read(data).pages[0].extract_text()
    assert "1234.56" in text and "50.00" in text
    assert text.index("Станция Юг") < text.index("Station")      # the chart's label above the table's header
    drawn = read(data).pages[0].get_contents()
    assert drawn is not None
    ops = drawn.get_data().decode("latin-1")
    bars, colour = [], ""
    for line in ops.splitlines():                                   # rectangles filled in the bars' blue
        colour = line if line.endswith(" rg") else colour
        drawn_rect = re.fullmatch(r"[\d.]+ [\d.]+ ([\d.]+) -?[\d.]+ re f", line)
        if drawn_rect and colour == "0.1843 0.4353 0.6235 rg":
            bars.append(float(drawn_rect.group(1)))
    assert len(bars) == 2 and bars[0] / bars[1] == pytest.approx(123456 / 5000, rel=1e-2)


def test_an_empty_table_is_a_document() -> None:
    pdf = read(table_pdf("Nothing", "no sales", HEADER, [], chart=([], [], "money")))
    assert "no sales" in pdf.pages[0].extract_text()


def test_a_wide_table_turns_landscape() -> None:
    header = [f"Column {i}" for i in range(14)]
    pdf = read(table_pdf("Wide", "", header, [[f"value {i} long text" for i in range(14)]] * 3))
    page = pdf.pages[0]
    assert float(page.mediabox.width) > float(page.mediabox.height)
    assert "Column 13" in page.extract_text()


def test_rows_must_match_the_header() -> None:
    with pytest.raises(ConfigError):
        table_pdf("t", "", ["a", "b"], [["1"]])
    with pytest.raises(ConfigError):
        table_pdf("t", "", ["a"], [], chart=(["x"], [1, 2], ""))


def test_a_missing_font_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(MissingComponent, match="fonts-dejavu-core"):
        table_pdf("t", "", ["a"], [["1"]], font_dir=tmp_path)


def test_sections_follow_the_table_under_their_headings() -> None:
    data = table_pdf("Statement", "", ["Card", "Amount"], [["707700******0001", "10.00"]],
                     sections=[Section("Per card", ["Card", "Sales"], [["707700******0001", "1"]]),
                               Section("По машинам", ["Vehicle", "Sales"], [["B-XY 12", "1"]])])
    text = read(data).pages[0].extract_text()
    assert text.index("10.00") < text.index("Per card") < text.index("По машинам") < text.index("B-XY 12")
    with pytest.raises(ConfigError):
        table_pdf("t", "", ["a"], [["1"]], sections=[Section("s", ["a", "b"], [["1"]])])


def test_a_fleet_statement_as_pdf(tmp_path: Path) -> None:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = load_or_create_keys(tmp_path / "registry-keys.json")
    ops: dict[str, Any] = {"actor": "alice", "now": dt.datetime(2026, 12, 1, 12, 0)}
    try:
        with sessions() as s:
            s.add(Station(id="ST-001", name="North"))
            customer = admin.create_customer(s, "Грузовики ООО", **ops)
            account = admin.create_account(s, customer.id, "Trucks", **ops)
            truck = admin.add_vehicle(s, account.id, "AB12", **ops)
            card = cards.issue_card(s, keys, account.id, "7077001000000019", medium="chip", expiry="2812",
                                    pin=None, **ops)
            for n, (cl, cents, held, vehicle) in enumerate([(40_00, 66_36, False, truck.id),
                                                            (10_00, 16_59, False, None),
                                                            (99_00, 164_24, True, truck.id)], 1):
                at = dt.datetime(2026, 11, n, 8, 0)
                s.add(Transaction(sale_id=f"sale-{n}", seq=n, kind="fleet", card_id=card.id, device_id="T-1",
                                  station_id="ST-001", pump=1, nozzle=1, product="diesel", volume_cl=cl,
                                  amount_cents=cents, price_milli=1659, card_masked=card.masked,
                                  finished_at=at, received_at=at, held=held, account_id=account.id,
                                  vehicle_id=vehicle))
            s.flush()
            st = statement(s, customer.id, dt.date(2026, 11, 1), dt.date(2026, 11, 30))
            english = read(statement_pdf(st))
            words = StatementLabels(title="Выписка: {customer}", per_card="По картам", held="удержана")
            russian = read(statement_pdf(st, words))
    finally:
        engine.dispose()
    text = "\n".join(p.extract_text() for p in english.pages)
    assert "Statement: Грузовики ООО" in text and "2026-11-01 to 2026-11-30" in text
    assert "2 sales, 50.00 L, amount 82.95" in text                    # the held sale not counted
    assert card.masked in text and "7077001000000019" not in text
    assert "held" in text and "164.24" in text and "AB12" in text
    assert text.index("Per card") < text.index("Per vehicle") < text.rindex("Total")
    ru = "\n".join(p.extract_text() for p in russian.pages)
    assert "Выписка: Грузовики ООО" in ru and "По картам" in ru and "удержана" in ru


def test_a_long_cell_wraps_in_its_column() -> None:
    long = " ".join(["Estación"] * 40) + " " + "Ж" * 120
    pdf = read(table_pdf("Wrap", "", ["Date", "Station", "Amount"], [["2026-11-01", long, "1.00"]]))
    page = pdf.pages[0]
    assert float(page.mediabox.width) < float(page.mediabox.height)            # still portrait
    text = page.extract_text()
    assert text.count("Estación") == 40 and text.replace("\n", "").count("Ж") == 120
    assert "2026-11-01" in text and "1.00" in text
