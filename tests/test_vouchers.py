"""registry.vouchers and registry.voucher_print on a real SQLite registry: codes, issue, redeem once,
the refusals and their reasons, the guessing brake, release and void, and the printed sheets (the QR
read back). Threads at once on SQLite and PostgreSQL are in test_vouchers_pg.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from contracts.cards import luhn_ok
from contracts.errors import ConfigError
from registry import vouchers
from registry.db import open_database
from registry.keys import RegistryKeys
from registry.models import AuditEntry, Nozzle, Product, Station, Voucher
from registry.voucher_print import SHEET_SIZE, qr_image, write_sheets
from registry.vouchers import MAX_MISSES, MISS_WINDOW, VoucherError, VoucherRefused

NOW = dt.datetime(2026, 12, 1, 10, 0)
KEYS = RegistryKeys(card_key=bytes(range(32)), pin_key=b"\x02" * 32, kek=b"\x03" * 32)


def seed(s: Session) -> None:
    """Station S1 sells diesel, S2 petrol only."""
    s.add_all([Station(id="S1", name="One"), Station(id="S2", name="Two"),
               Product(code="diesel", name="Diesel"), Product(code="petrol", name="Super 95")])
    s.flush()
    s.add_all([Nozzle(station_id="S1", pump=1, nozzle=1, product_code="diesel", price_milli=1789),
               Nozzle(station_id="S2", pump=1, nozzle=1, product_code="petrol", price_milli=1859)])
    s.commit()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    with sessions() as s:
        seed(s)
    yield sessions
    engine.dispose()


def issue(sessions: sessionmaker[Session], count: int = 1, **kw: object) -> list[str]:
    args: dict[str, object] = {"product": "diesel", "volume_cl": 40_00, "expires_on": dt.date(2027, 6, 30),
                               "batch": "XMAS", "now": NOW, "actor": "op1"} | kw
    with sessions() as s:
        made = vouchers.issue(s, KEYS, count=count, **args)  # type: ignore[arg-type]
        s.commit()
    return [m.code for m in made]


def redeem(sessions: sessionmaker[Session], code: str, *, terminal: str = "T1", station: str = "S1",
           now: dt.datetime = NOW, request: str | None = None, timezone: str = "UTC") -> vouchers.Redeemed:
    with sessions() as s:
        return vouchers.redeem(s, KEYS, code, terminal=terminal, station=station, now=now, request=request,
                               timezone=timezone)


def refused(sessions: sessionmaker[Session], code: str, **kw: object) -> VoucherRefused:
    with pytest.raises(VoucherRefused) as info:
        redeem(sessions, code, **kw)  # type: ignore[arg-type]
    return info.value


def status(sessions: sessionmaker[Session], voucher_id: int) -> str:
    with sessions() as s:
        return s.get_one(Voucher, voucher_id).status


def other_valid(code: str) -> str:
    """A Luhn-valid code that differs from `code` in two digits (no voucher has it)."""
    body = code[:-3] + str((int(code[-3]) + 1) % 10) + code[-2]
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


# --- codes -------------------------------------------------------------------------------------------

def test_codes_are_19_luhn_valid_digits_and_differ() -> None:
    codes = {vouchers.new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == 19 and c.isdigit() and luhn_ok(c) for c in codes)
    firsts = {c[0] for c in codes}
    assert firsts == set("0123456789")          # the leading digit is random too (zero-padded)


def test_a_digest_depends_on_the_key_and_is_not_the_card_token_of_the_digits() -> None:
    code = vouchers.new_code()
    key = vouchers.code_key(KEYS)
    other = vouchers.code_key(RegistryKeys(card_key=b"\x09" * 32, pin_key=b"", kek=b""))
    assert vouchers.code_digest(key, code) != vouchers.code_digest(other, code)
    assert len(vouchers.code_digest(key, code)) == 64
    assert key != KEYS.card_key and KEYS.token(code) not in vouchers.code_digest(key, code)


# --- issue -------------------------------------------------------------------------------------------

def test_issue_keeps_a_digest_and_the_last_four_digits_only(db: sessionmaker[Session]) -> None:
    codes = issue(db, 3)
    with db() as s:
        rows = list(s.scalars(select(Voucher).order_by(Voucher.id)))
        entries = list(s.scalars(select(AuditEntry)))
    assert [r.code_hint for r in rows] == [c[-4:] for c in codes]
    assert [r.code_digest for r in rows] == [vouchers.code_digest(vouchers.code_key(KEYS), c) for c in codes]
    assert {(r.product, r.volume_cl, r.status, r.batch, r.expires_on) for r in rows} == {
        ("diesel", 40_00, "issued", "XMAS", dt.date(2027, 6, 30))}
    stored = " ".join(f"{r.code_digest} {r.code_hint} {r.batch}" for r in rows)
    assert not any(c in stored or c[:16] in stored for c in codes)
    [entry] = entries
    assert (entry.action, entry.actor, entry.subject) == ("voucher.issue", "op1", "vouchers:1-3")
    assert json.loads(entry.detail)["count"] == 3
    assert not any(c[:8] in entry.detail or c[-8:] in entry.detail for c in codes)


@pytest.mark.parametrize(("change", "key"), [
    ({"product": "kerosene"}, "product"), ({"volume_cl": 0}, "litres"), ({"volume_cl": 150_01}, "litres"),
    ({"count": 0}, "count"), ({"count": 1001}, "count"), ({"expires_on": dt.date(2026, 11, 30)}, "expires"),
    ({"batch": "a b"}, "batch"), ({"batch": "x" * 33}, "batch")])
def test_issue_refuses_bad_values(db: sessionmaker[Session], change: dict[str, object], key: str) -> None:
    args: dict[str, object] = {"product": "diesel", "volume_cl": 40_00, "count": 1, "expires_on": None,
                               "batch": "", "now": NOW, "actor": "op1"} | change
    with db() as s, pytest.raises(ConfigError) as info:
        vouchers.issue(s, KEYS, **args)  # type: ignore[arg-type]
    assert info.value.context["key"] == key


# --- redeem ------------------------------------------------------------------------------------------

def test_a_voucher_is_redeemed_once_network_wide(db: sessionmaker[Session]) -> None:
    [code] = issue(db)
    got = redeem(db, vouchers.group_code(code))            # typed with the printed spaces
    assert got == vouchers.Redeemed(1, "diesel", 40_00)
    assert refused(db, code).reason == "used"
    assert refused(db, code, terminal="T9").reason == "used"
    with db() as s:
        row = s.get_one(Voucher, 1)
        assert (row.status, row.terminal, row.redeemed_at) == ("redeemed", "T1", NOW)
        actions = [a.action for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["voucher.issue", "voucher.redeem"]


def test_the_same_request_asked_again_gets_the_same_voucher(db: sessionmaker[Session]) -> None:
    [code] = issue(db)
    first = redeem(db, code, request="auth-1")
    assert redeem(db, code, request="auth-1") == first              # the answer was lost: asked again
    assert refused(db, code, request="auth-2").reason == "used"
    assert refused(db, code, terminal="T2", request="auth-1").reason == "used"


def test_a_typo_is_told_apart_from_an_unknown_code_and_is_not_counted(db: sessionmaker[Session]) -> None:
    [code] = issue(db)
    typo = code[:-1] + str((int(code[-1]) + 1) % 10)
    for _ in range(MAX_MISSES + 2):
        assert refused(db, typo).reason == "check_digit"
    assert refused(db, "1234").reason == "malformed"
    assert refused(db, "x" * 20).reason == "malformed"
    assert refused(db, other_valid(code)).reason == "unknown"
    assert redeem(db, code).voucher_id == 1                 # one miss: far from the brake


def test_five_unknown_codes_stop_the_terminal_for_ten_minutes(db: sessionmaker[Session]) -> None:
    [code] = issue(db)
    wrong = other_valid(code)
    for minute in range(MAX_MISSES):
        assert refused(db, wrong, now=NOW + dt.timedelta(minutes=minute)).reason == "unknown"
    later = NOW + dt.timedelta(minutes=MAX_MISSES)
    stopped = refused(db, code, now=later)                  # even the right code, while it lasts
    assert stopped.reason == "too_many_tries"
    assert stopped.context["until"] == (NOW + MISS_WINDOW).isoformat()
    assert redeem(db, code, terminal="T2", now=later).voucher_id == 1          # per terminal
    assert status(db, 1) == "redeemed"
    [code2] = issue(db)
    second = dt.timedelta(seconds=1)
    assert refused(db, code2, now=NOW + MISS_WINDOW - second).reason == "too_many_tries"
    assert redeem(db, code2, now=NOW + MISS_WINDOW).voucher_id == 2      # "until": the first miss aged out


def test_expired_void_and_not_sold_here(db: sessionmaker[Session]) -> None:
    a, b, c = issue(db, 3, expires_on=dt.date(2026, 12, 31))
    last_day = dt.datetime(2026, 12, 31, 23, 30)        # 00:30 on 1 January in Berlin
    assert refused(db, a, now=last_day, timezone="Europe/Berlin").reason == "expired"
    assert refused(db, a, now=dt.datetime(2027, 1, 1, 0, 0)).reason == "expired"
    assert redeem(db, a, now=last_day).voucher_id == 1                                   # still 31 in UTC
    with db() as s:
        vouchers.void(s, 2, actor="op1", reason="lost in the post", now=NOW)
        s.commit()
    assert refused(db, b).reason == "void"
    wrong_station = refused(db, c, station="S2")
    assert (wrong_station.reason, status(db, 3)) == ("not_sold_here", "issued")
    assert redeem(db, c).voucher_id == 3


def test_void_needs_an_issued_voucher_and_a_reason(db: sessionmaker[Session]) -> None:
    a, _ = issue(db, 2)
    redeem(db, a)
    with db() as s:
        with pytest.raises(VoucherError):
            vouchers.void(s, 1, actor="op1", reason="why", now=NOW)
        with pytest.raises(ConfigError):
            vouchers.void(s, 2, actor="op1", reason=" ", now=NOW)
        with pytest.raises(ConfigError):
            vouchers.void(s, 99, actor="op1", reason="why", now=NOW)
    assert (status(db, 1), status(db, 2)) == ("redeemed", "issued")


def test_release_gives_the_voucher_back_only_to_the_terminal_and_request_that_took_it(
        db: sessionmaker[Session]) -> None:
    [code] = issue(db)
    redeem(db, code, request="auth-1")
    with db() as s:
        assert not vouchers.release(s, 1, terminal="T2", now=NOW)
        assert not vouchers.release(s, 1, terminal="T1", request="auth-9", now=NOW)
        assert vouchers.release(s, 1, terminal="T1", request="auth-1", now=NOW)
        assert not vouchers.release(s, 1, terminal="T1", request="auth-1", now=NOW)     # once
    assert status(db, 1) == "issued"
    assert redeem(db, code, terminal="T2").voucher_id == 1
    with db() as s:
        with pytest.raises(ConfigError):
            vouchers.release(s, 1, terminal="T2", now=NOW, actor="op1", reason="")
        assert vouchers.release(s, 1, terminal="T2", now=NOW, actor="op1", reason="pump fault")
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert entry is not None and (entry.action, entry.actor, entry.reason) == (
        "voucher.release", "op1", "pump fault")


def test_no_code_in_errors_audit_or_logs(db: sessionmaker[Session], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    codes = issue(db, 2)
    seen = []
    for code in [codes[0], codes[0], other_valid(codes[1]), codes[1][:-1] + "x"]:
        try:
            redeem(db, code)
        except VoucherRefused as exc:
            seen.append(f"{exc} {exc.context}")
    with db() as s:
        seen += [f"{a.subject} {a.reason} {a.detail}" for a in s.scalars(select(AuditEntry))]
    seen.append(caplog.text)
    text = " ".join(seen)
    assert all(reason in text for reason in ("used", "unknown", "malformed"))
    for code in codes + [other_valid(codes[1])]:
        assert code[:8] not in text and code[8:16] not in text and vouchers.group_code(code)[:9] not in text


def test_find_by_hint_batch_and_status(db: sessionmaker[Session]) -> None:
    codes = issue(db, 3) + issue(db, 1, batch="B2")
    redeem(db, codes[0])
    with db() as s:
        assert [v.id for v in vouchers.find(s, hint=codes[2][-4:])] == [3]
        assert [v.id for v in vouchers.find(s, batch="XMAS", status="issued")] == [3, 2]
        assert [v.id for v in vouchers.find(s, status="redeemed")] == [1]
        with pytest.raises(ConfigError):
            vouchers.find(s, hint="12a4")


# --- a property: whatever the order of redemptions, releases and voids, none is redeemed twice --------

OPS = st.lists(st.tuples(st.sampled_from(["redeem", "release", "void"]), st.integers(0, 2),
                         st.sampled_from(["T1", "T2", "T3"]), st.sampled_from(["r1", "r2"])), max_size=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_no_voucher_is_ever_held_by_two_sales(tmp_path_factory: pytest.TempPathFactory,
                                              ops: list[tuple[str, int, str, str]]) -> None:
    engine: Engine
    engine, db = open_database(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'registry.db'}")
    try:
        with db() as s:
            seed(s)
        codes = issue(db, 3)
        holder: dict[int, tuple[str, str] | None] = {i: None for i in range(3)}    # the model
        voided: set[int] = set()
        for op, i, terminal, request in ops:
            if op == "redeem":
                try:
                    redeem(db, codes[i], terminal=terminal, request=request)
                    assert holder[i] in (None, (terminal, request)) and i not in voided
                    holder[i] = (terminal, request)
                except VoucherRefused as exc:
                    if i in voided:
                        assert exc.reason == "void"
                    else:
                        assert exc.reason == "used" and holder[i] not in (None, (terminal, request))
            elif op == "release":
                with db() as s:
                    done = vouchers.release(s, i + 1, terminal=terminal, request=request, now=NOW)
                assert done == (holder[i] == (terminal, request))
                if done:
                    holder[i] = None
            else:
                with db() as s:
                    try:
                        vouchers.void(s, i + 1, actor="op1", reason="withdrawn", now=NOW)
                        s.commit()
                        assert holder[i] is None and i not in voided
                        voided.add(i)
                    except VoucherError:
                        assert holder[i] is not None or i in voided
        for i in range(3):
            want = "void" if i in voided else "redeemed" if holder[i] else "issued"
            assert status(db, i + 1) == want
    finally:
        engine.dispose()


# --- sheets ------------------------------------------------------------------------------------------

def modules(image: Image.Image, box: int) -> list[list[bool]]:
    """The dark modules of a QR image drawn `box` pixels per module with a 4-module quiet zone."""
    size = image.width // box - 8
    grey = image.convert("L")
    return [[grey.getpixel(((x + 4) * box + box // 2, (y + 4) * box + box // 2)) < 128  # type: ignore[operator]
             for x in range(size)] for y in range(size)]


def test_the_qr_holds_the_code_alone() -> None:
    import qrcode  # type: ignore[import-untyped]

    code = vouchers.new_code()
    drawn = modules(qr_image(code, box=4), 4)
    qr = qrcode.QRCode(border=0)
    qr.add_data(code)
    qr.make(fit=True)
    expected = [[bool(m) for m in row] for row in qr.get_matrix()]
    assert len(drawn) == 21                              # version 1: 19 digits in numeric mode fit
    assert drawn == expected[:21] and qr.data_list[0].mode == 1          # 1: numeric (qrcode.util)
    wrong = qrcode.QRCode(border=0)
    wrong.add_data(other_valid(code))
    wrong.make(fit=True)
    assert drawn != [[bool(m) for m in row] for row in wrong.get_matrix()]


def test_sheets_are_written_private_with_what_they_should_hold(db: sessionmaker[Session],
                                                              tmp_path: Path) -> None:
    with db() as s:
        made = vouchers.issue(s, KEYS, product="diesel", volume_cl=25_50, count=2,
                              expires_on=dt.date(2027, 1, 31), batch="B1", now=NOW, actor="op1")
        s.commit()
    out = tmp_path / "sheets"
    written = write_sheets(made, out, product_name="Diesel", pdf=True)
    assert [p.name for p in written] == ["voucher-000001.png", "voucher-000002.png",
                                         "vouchers-000001-000002.pdf"]
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in written)
    for voucher, path in zip(made, written, strict=False):
        with Image.open(path) as png:
            assert png.size == SHEET_SIZE
            assert {k: png.info[k] for k in ("voucher", "product", "volume_cl", "expires_on", "batch")} == {
                "voucher": str(voucher.voucher_id), "product": "diesel", "volume_cl": "2550",
                "expires_on": "2027-01-31", "batch": "B1"}
            assert voucher.code not in " ".join(str(v) for v in png.info.values())
            decoded = decode_qr(png)
        if decoded is not None:
            assert decoded == [voucher.code]
    pdf = written[2].read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") >= 2
    assert b"/Count 2" in pdf
    with pytest.raises(ConfigError):
        write_sheets(made[:1], out, product_name="Diesel")          # never over a printed sheet


def decode_qr(image: Image.Image) -> list[str] | None:
    """The texts of the QR codes in image by zxing-cpp, or None when it is not installed."""
    try:
        import zxingcpp  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return [r.text for r in zxingcpp.read_barcodes(image.convert("L"))]


def test_a_decoder_reads_the_sheet_back() -> None:
    pytest.importorskip("zxingcpp")
    voucher = vouchers.IssuedVoucher(7, vouchers.new_code(), "diesel", 40_00, None, "")
    from registry.voucher_print import sheet

    assert decode_qr(sheet(voucher, "Diesel")) == [voucher.code]
