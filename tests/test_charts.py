"""registry.charts: SVG that parses as XML, bars as long as their values, labels from the database
escaped, ticks round."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest

from contracts.errors import ConfigError
from registry.charts import bar_chart, clean, line_chart, nice_ticks, value_text

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def bars(root: ET.Element) -> list[ET.Element]:
    return root.findall(".//svg:rect[@class='bar']", NS)


def texts(root: ET.Element, cls: str) -> list[str]:
    return [t.text or "" for t in root.findall(f".//svg:text[@class='{cls}']", NS)]


def test_bars_are_proportional_to_their_values() -> None:
    root = parse(bar_chart("Turnover", ["S1", "S2", "S3"], [100_00, 250_00, 50_00], "money"))
    widths = [float(b.get("width", "0")) for b in bars(root)]
    assert [int(b.get("data-value", "0")) for b in bars(root)] == [100_00, 250_00, 50_00]
    assert widths[1] / widths[0] == pytest.approx(2.5, rel=1e-3)
    assert widths[2] / widths[0] == pytest.approx(0.5, rel=1e-3)
    assert texts(root, "value") == ["100.00", "250.00", "50.00"]
    assert texts(root, "label") == ["S1", "S2", "S3"]
    assert root.find("svg:title", NS) is not None and root.findtext("svg:title", namespaces=NS) == "Turnover"


def test_bars_stay_inside_the_chart_and_start_at_zero() -> None:
    root = parse(bar_chart("t", ["a", "b", "c", "d"], [7, 3, 1, 0], "", width=400, height=200))
    assert root.get("width") == "400" and root.get("viewBox") == "0 0 400 200"
    starts = {float(b.get("x", "0")) for b in bars(root)}
    assert len(starts) == 1                         # both from the zero line
    for b in bars(root):
        assert float(b.get("x", "0")) + float(b.get("width", "0")) <= 400


def test_a_negative_value_goes_left_of_zero() -> None:
    root = parse(bar_chart("Corrections", ["up", "down"], [300, -100], "cents"))
    up, down = bars(root)
    assert float(down.get("x", "0")) + float(down.get("width", "0")) == pytest.approx(float(up.get("x", "0")))
    assert float(up.get("width", "0")) / float(down.get("width", "0")) == pytest.approx(3, rel=1e-3)
    assert texts(root, "value") == ["3.00", "-1.00"]


def test_a_hostile_label_is_escaped() -> None:
    hostile = '</text><script>alert("x")</script>&amp;\x01\'<'
    svg = bar_chart('Station "A" & <B>', [hostile, "ok"], [1, 2], "volume")
    assert "<script>" not in svg and "\x01" not in svg
    root = parse(svg)
    assert root.findall(".//svg:script", NS) == []
    label = texts(root, "label")[0]
    assert label.startswith('</text><script>') and "\x01" not in label     # shown as text, cut short
    tips = [t.text for t in root.findall(".//svg:g/svg:title", NS)]
    assert tips[0] == '</text><script>alert("x")</script>&amp;\'<: 0.01 L'
    assert root.findtext("svg:title", namespaces=NS) == 'Station "A" & <B>'
    assert root.get("aria-label") == 'Station "A" & <B>'


def test_many_bars_make_the_chart_taller_and_a_few_shorter() -> None:
    labels = [f"S{i}" for i in range(60)]
    root = parse(bar_chart("Stations", labels, list(range(60)), "", height=320))
    assert int(root.get("height", "0")) >= 60 * 16
    assert len(bars(root)) == 60
    one = parse(bar_chart("Stations", ["S1"], [5], "", height=320))
    assert int(one.get("height", "0")) < 120
    assert float(bars(one)[0].get("height", "0")) <= 40


def test_no_data_is_still_a_chart() -> None:
    root = parse(bar_chart("Nothing", [], [], "money"))
    assert bars(root) == []
    root = parse(line_chart("Nothing", [], [], "money"))
    assert root.findall(".//svg:polyline", NS) == []


def test_labels_and_values_must_pair() -> None:
    with pytest.raises(ConfigError):
        bar_chart("t", ["a"], [1, 2], "")
    with pytest.raises(ConfigError):
        line_chart("t", ["a", "b"], [1], "")


def test_line_chart_points_follow_the_values() -> None:
    days = [f"2026-11-{d:02d}" for d in range(1, 31)]
    values = [d * 100 for d in range(30)]
    root = parse(line_chart("Per day <litres>", days, values, "cl"))
    points = root.findall(".//svg:circle[@class='point']", NS)
    ys = [float(p.get("cy", "0")) for p in points]
    assert len(points) == 30
    assert all(a > b for a, b in itertools.pairwise(ys))     # rising values, rising line (y down)
    step = ys[0] - ys[1]
    assert all(a - b == pytest.approx(step, rel=1e-3) for a, b in itertools.pairwise(ys))
    assert len(texts(root, "label")) <= 10
    assert root.findtext("svg:title", namespaces=NS) == "Per day <litres>"


def test_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(0, 0) == [0, 1]
    assert nice_ticks(0, 123_456) == [0, 50_000, 100_000, 150_000]
    ticks = nice_ticks(-35, 120)
    assert 0 in ticks and ticks[0] <= -35 and ticks[-1] >= 120 and len(ticks) <= 7
    for low, high in [(0, 1), (3, 97), (-1000, -10), (0, 10**12)]:
        ticks = nice_ticks(low, high)
        assert ticks[0] <= low and ticks[-1] >= high and len(ticks) <= 7


def test_values_in_the_projects_units() -> None:
    assert value_text(123456, "money") == "1234.56"
    assert value_text(-5, "cents") == "-0.05"
    assert value_text(5025, "volume") == "50.25 L"
    assert value_text(7, "sales") == "7 sales"
    assert value_text(7, "") == "7"
    assert clean("a\x00b<c>") == "ab&lt;c&gt;"
