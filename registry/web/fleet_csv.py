"""Fleet customers and cards as CSV files, in the shape a back-office system such as 1C:Enterprise exports
and imports a catalogue; and a customer's edit (name, kind, tax id), which the import and the web share.

The format, both files:
- UTF-8 with a byte order mark; fields separated by ";", records by CRLF; one header row first. A field
  holding ";", a quote or a line break is quoted ("...", its quotes doubled), as RFC 4180 otherwise does.
- Header names as below, in any order, case ignored; the Russian names a 1C export prints are taken too
  (Наименование, ИНН, Номер карты ...). An unknown column is refused (a typo would drop data silently).
- Dates DD.MM.YYYY; a card's expiry MM/YY, as embossed; decimals with a comma, no thousands separator
  ("80,50"; spaces in "1 234,50" are read over); empty cell: nothing.
- A text cell that a spreadsheet would run as a formula (starting = + - @, a tab or CR) is written with a
  leading apostrophe, which the import takes off again.
- Row numbers in errors count the header as row 1, as a spreadsheet shows them.

Customers: id;name;kind;tax_id;created;accounts. The import reads id, name, kind (company or individual,
default company), tax_id; created and accounts are the export's and read over. A row without an id adds a
customer, unless one of that name and tax id is there already (re-importing a file changes nothing); a row
with an id edits that customer.

Cards: id;number;medium;status;expiry;account;customer;vehicle;driver;day_limit_l;month_limit_l;
day_limit_money;month_limit_money;changed;replaced_by. The export's number is masked, never the full one.
The import issues new cards: number (full, sealed and tokenised as registry.fleet.cards.issue_card does),
medium (chip, stripe, tag; default chip), status (new or active; default new), expiry, account (a fleet
account's id), vehicle (its number; added to the account when new), driver (the id keyed in; likewise) and
the card's day and month limits in litres and money; id, customer, changed and replaced_by are read over.
No PIN comes from a file: an imported card has none until it is reissued with one.

Every row is checked first (the real domain calls, each in a savepoint); one bad row refuses the whole file
(CsvRejected lists each row's problem) and nothing stays. A card number is never in an error.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from contracts.errors import ConfigError, ForecourtError
from registry.fleet import admin, cards
from registry.keys import RegistryKeys
from registry.models import Account, Card, Customer, Driver, Limit, Vehicle

__all__ = ["CARD_COLUMNS", "CUSTOMER_COLUMNS", "CsvRejected", "Imported", "RowError", "edit_customer",
           "export_cards", "export_customers", "import_cards", "import_customers"]

SEP = ";"
MAX_BYTES = 5_000_000
MAX_ROWS = 20_000
REASON = "CSV import"
CUSTOMER_COLUMNS = ("id", "name", "kind", "tax_id", "created", "accounts")
LIMIT_COLUMNS = {"day_limit_l": ("day", "volume"), "month_limit_l": ("month", "volume"),
                 "day_limit_money": ("day", "money"), "month_limit_money": ("month", "money")}
CARD_COLUMNS = ("id", "number", "medium", "status", "expiry", "account", "customer", "vehicle", "driver",
                *LIMIT_COLUMNS, "changed", "replaced_by")
_CUSTOMER_READ = frozenset({"id", "name", "kind", "tax_id"})
_CARD_READ = frozenset({"number", "medium", "status", "expiry", "account", "vehicle", "driver",
                        *LIMIT_COLUMNS})
# the column titles a Russian 1C configuration prints, lower case
ALIASES = {"код в реестре": "id", "наименование": "name", "вид": "kind", "инн": "tax_id",
           "дата создания": "created", "счета": "accounts", "номер карты": "number", "носитель": "medium",
           "статус": "status", "срок действия": "expiry", "счет": "account", "счёт": "account",
           "контрагент": "customer", "транспортное средство": "vehicle", "водитель": "driver"}
KINDS = {"company": "company", "individual": "individual", "юрлицо": "company", "юридическое лицо": "company",
         "физлицо": "individual", "физическое лицо": "individual"}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_DECIMAL = re.compile(r"([0-9]{1,10})(?:,([0-9]{1,2}))?", re.ASCII)
_EXPIRY = re.compile(r"(0[1-9]|1[0-2])/(?:20)?([0-9]{2})", re.ASCII)
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_EXTRA = "\x00extra"          # a row's own problem, found while reading it


@dataclass(frozen=True)
class RowError:
    row: int            # the header is row 1
    column: str         # "" the whole row
    message: str


class CsvRejected(ConfigError):
    """The file is refused as a whole: `errors` says what is wrong where; nothing was imported."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the file: nothing was imported")
        self.errors = tuple(errors)


@dataclass
class Imported:
    created: list[int] = field(default_factory=list)        # ids of the new rows
    updated: list[int] = field(default_factory=list)
    unchanged: int = 0


class _Cell(ForecourtError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def _naive_utc(now: dt.datetime) -> dt.datetime:          # the database's datetimes are naive UTC
    return now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo else now


def _text_out(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA) else value


def _decimal_out(hundredths: int | None) -> str:
    return "" if hundredths is None else f"{hundredths // 100},{hundredths % 100:02d}"


def _date_out(when: dt.date | dt.datetime | None) -> str:
    return "" if when is None else f"{when:%d.%m.%Y}"


def _write(header: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=SEP, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def export_customers(s: Session, *, ids: set[int] | None = None) -> bytes:
    """Every customer (or those of `ids`), by id, with its number of accounts."""
    per = dict(s.execute(select(Account.customer_id, func.count()).group_by(Account.customer_id)).all())
    query = select(Customer).order_by(Customer.id)
    if ids is not None:
        query = query.where(Customer.id.in_(ids))
    rows = [[str(c.id), _text_out(c.name), c.kind, _text_out(c.tax_id), _date_out(c.created_at),
             str(per.get(c.id, 0))] for c in s.scalars(query)]
    return _write(CUSTOMER_COLUMNS, rows)


def export_cards(s: Session, *, customer_id: int | None = None, account_id: int | None = None) -> bytes:
    """The fleet accounts' cards (of one customer or account when given), by id, numbers masked."""
    query = (select(Card, Account.customer_id, Vehicle.number, Driver.code)
             .join(Account, Account.id == Card.account_id)
             .outerjoin(Vehicle, Vehicle.id == Card.vehicle_id).outerjoin(Driver, Driver.id == Card.driver_id)
             .where(Account.kind == "fleet").order_by(Card.id))
    if customer_id is not None:
        query = query.where(Account.customer_id == customer_id)
    if account_id is not None:
        query = query.where(Card.account_id == account_id)
    found = s.execute(query).all()
    limits: dict[tuple[int, str, str], int] = {}
    card_ids = [card.id for card, *_ in found]
    for start in range(0, len(card_ids), 500):          # IN lists of a bounded size
        chunk = card_ids[start:start + 500]
        for x in s.scalars(select(Limit).where(Limit.scope == "card", Limit.scope_id.in_(chunk))):
            limits[(x.scope_id, x.period, x.unit)] = x.maximum
    rows = []
    for card, customer, vehicle, driver in found:
        caps = [_decimal_out(limits.get((card.id, *LIMIT_COLUMNS[c]))) for c in LIMIT_COLUMNS]
        expiry = f"{card.expiry[2:]}/{card.expiry[:2]}" if len(card.expiry) == 4 else card.expiry
        rows.append([str(card.id), card.masked, card.medium, card.status, expiry, str(card.account_id),
                     "" if customer is None else str(customer), vehicle or "", driver or "", *caps,
                     _date_out(card.status_changed_at), str(card.replaced_by or "")])
    return _write(CARD_COLUMNS, rows)


def _cell_in(value: str) -> str:
    value = value.strip()
    return value[1:] if value[:1] == "'" and value[1:2] and value[1:2] in _FORMULA else value


def _read(data: bytes, known: Sequence[str], read: frozenset[str],
          required: frozenset[str]) -> list[tuple[int, dict[str, str]]]:
    """The data rows of a file as (row number, {column: cell}) of the columns the import reads."""
    if len(data) > MAX_BYTES:
        raise ConfigError(f"the file is larger than {MAX_BYTES // 1_000_000} MB: split it", key="file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError("the file is not UTF-8: export it as UTF-8", key="file") from exc
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=SEP, strict=True)
    try:
        records = list(reader)
    except csv.Error as exc:
        raise CsvRejected([RowError(reader.line_num, "", f"not ';'-separated CSV: {exc}")]) from exc
    if not records:
        raise CsvRejected([RowError(1, "", "the file is empty: a header row is needed")])
    header = [ALIASES.get(h.strip().lower(), h.strip().lower()) for h in records[0]]
    # a column without a name (a trailing ";" a spreadsheet leaves) is read over
    problems = [RowError(1, h, f"unknown column; the columns are {', '.join(known)}")
                for h in header if h and h not in known]
    twice = sorted({h for h in header if h and header.count(h) > 1})
    problems += [RowError(1, h, "column given twice") for h in twice]
    problems += [RowError(1, h, "column missing") for h in sorted(required - set(header))]
    if problems:
        raise CsvRejected(problems)
    rows = []
    for number, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        cells = {h: _cell_in(v) for h, v in zip(header, record, strict=False) if h in read}
        cells = {h: cells.get(h, "") for h in read}
        if len(record) > len(header):
            cells[_EXTRA] = "more fields than the header has (a ';' in unquoted text?)"
        rows.append((number, cells))
    if len(rows) > MAX_ROWS:
        raise ConfigError(f"the file has more than {MAX_ROWS} rows: split it", key="file")
    return rows


def _ident(value: str, column: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) < 2**31:
        raise _Cell(column, "must be an id: a whole number from 1")
    return int(value)


def _hundredths(value: str, column: str) -> int:
    match = _DECIMAL.fullmatch(re.sub(r"[ \u00a0\u202f]", "", value))
    if match is None:
        raise _Cell(column, "must be a number with up to 2 decimals after a comma, e.g. 80,50")
    return int(match[1]) * 100 + int((match[2] or "0").ljust(2, "0"))


def _expiry(value: str) -> str:
    match = _EXPIRY.fullmatch(value)
    if match is None:
        raise _Cell("expiry", "must be MM/YY, e.g. 12/29")
    return match[2] + match[1]


def _each(s: Session, rows: list[tuple[int, dict[str, str]]], apply: Callable[[int, dict[str, str]], None],
          known: Sequence[str]) -> None:
    """Apply every row in its own savepoint inside one for the file; any row refused: all rolled back."""
    errors: list[RowError] = []
    # pysqlite begins a transaction at the first write, not at a SAVEPOINT (one outside a transaction
    # commits when released): a write that changes nothing first, so the caller alone commits the file
    s.execute(update(Customer).where(Customer.id == -1).values(kind=Customer.kind)
              .execution_options(synchronize_session=False))
    if s.get_bind().dialect.name == "postgresql":    # that locks nothing there: one import at a time ("FCSV")
        s.execute(sql("SELECT pg_advisory_xact_lock(:key)"), {"key": 0x46435356})
    whole = s.begin_nested()
    try:
        for row, cells in rows:
            if _EXTRA in cells:
                errors.append(RowError(row, "", cells[_EXTRA]))
                continue
            point = s.begin_nested()
            try:
                apply(row, cells)
                s.flush()
            except _Cell as exc:
                point.rollback()
                errors.append(RowError(row, exc.column, str(exc.args[0])))
            except ForecourtError as exc:              # the domain's refusal: its message, never its context
                point.rollback()
                key = str(exc.context.get("key", ""))
                column = key if key in known else next((k for k in exc.context if k in known), "")
                errors.append(RowError(row, column, str(exc.args[0]) if exc.args else type(exc).__name__))
            else:
                point.commit()
    except BaseException:
        whole.rollback()
        raise
    if errors:
        whole.rollback()
        raise CsvRejected(errors)
    whole.commit()


def _customer_fields(name: str, kind: str, tax_id: str) -> tuple[str, str, str]:
    name, tax_id = name.strip(), tax_id.strip()
    if not _NAME.fullmatch(name):
        raise _Cell("name", "must be 1 to 200 characters without control characters")
    if kind.strip().lower() not in KINDS:
        raise _Cell("kind", "must be company or individual")
    if len(tax_id) > 32 or not tax_id.isprintable():
        raise _Cell("tax_id", "must be at most 32 printable characters")
    return name, KINDS[kind.strip().lower()], tax_id


def edit_customer(s: Session, customer_id: int, *, name: str, kind: str, tax_id: str, actor: str,
                  now: dt.datetime) -> bool:
    """Change a customer's name, kind and tax id (audited, before and after); False when nothing changed.
    Bad input is a ConfigError naming the field."""
    customer = admin.get(s, Customer, customer_id, "customer")
    try:
        name, kind, tax_id = _customer_fields(name, kind, tax_id)
    except _Cell as exc:
        raise ConfigError(f"{exc.column.replace('_', ' ')} {exc.args[0]}", key=exc.column) from exc
    before = {"name": customer.name, "kind": customer.kind, "tax_id": customer.tax_id}
    after = {"name": name, "kind": kind, "tax_id": tax_id}
    if before == after:
        return False
    customer.name, customer.kind, customer.tax_id = name, kind, tax_id
    admin.audit(s, actor=actor, action="customer.edit", subject=f"customer:{customer_id}",
                now=_naive_utc(now), before=before, after=after)
    return True


def import_customers(s: Session, data: bytes, *, actor: str, now: dt.datetime) -> Imported:
    """Add and edit customers from a file (the format above); all rows or none. The caller commits."""
    now = _naive_utc(now)
    rows = _read(data, CUSTOMER_COLUMNS, _CUSTOMER_READ, frozenset({"name"}))
    done = Imported()
    seen: dict[int, int] = {}

    def apply(row: int, cells: dict[str, str]) -> None:
        name, kind, tax_id = _customer_fields(cells["name"], cells["kind"] or "company", cells["tax_id"])
        if cells["id"]:
            ident = _ident(cells["id"], "id")
            if ident in seen:
                raise _Cell("id", f"customer {ident} is in row {seen[ident]} already")
            if s.get(Customer, ident) is None:
                raise _Cell("id", "no customer has this id (leave it empty to add one)")
            seen[ident] = row
            if edit_customer(s, ident, name=name, kind=kind, tax_id=tax_id, actor=actor, now=now):
                done.updated.append(ident)
            else:
                done.unchanged += 1
            return
        there = s.scalar(select(Customer.id).where(Customer.name == name, Customer.tax_id == tax_id).limit(1))
        if there is not None:
            done.unchanged += 1
            return
        done.created.append(admin.create_customer(s, name, kind=kind, tax_id=tax_id, actor=actor, now=now).id)

    _each(s, rows, apply, CUSTOMER_COLUMNS)
    if done.created or done.updated:
        admin.audit(s, actor=actor, action="customer.import", subject="customers", now=now,
                    created=len(done.created), updated=len(done.updated), unchanged=done.unchanged)
    return done


def _vehicle(s: Session, account_id: int, number: str, *, actor: str, now: dt.datetime) -> int | None:
    if not number:
        return None
    plain = re.sub(r"[\s-]", "", number).upper()        # as registry.fleet.admin.add_vehicle keeps it
    found = s.scalar(select(Vehicle.id).where(Vehicle.account_id == account_id, Vehicle.number == plain))
    if found is not None:
        return found
    try:
        return admin.add_vehicle(s, account_id, number, actor=actor, now=now).id
    except ConfigError as exc:
        raise _Cell("vehicle", str(exc.args[0])) from None


def _driver(s: Session, account_id: int, code: str, *, actor: str, now: dt.datetime) -> int | None:
    if not code:
        return None
    found = s.scalar(select(Driver.id).where(Driver.account_id == account_id, Driver.code == code))
    if found is not None:
        return found
    try:
        return admin.add_driver(s, account_id, code, actor=actor, now=now).id
    except ConfigError as exc:
        raise _Cell("driver", str(exc.args[0])) from None


def import_cards(s: Session, keys: RegistryKeys, data: bytes, *, actor: str, now: dt.datetime) -> Imported:
    """Issue the file's cards (the format above); all rows or none. The caller commits."""
    now = _naive_utc(now)
    rows = _read(data, CARD_COLUMNS, _CARD_READ, frozenset({"number", "expiry", "account"}))
    done = Imported()
    numbers: dict[str, int] = {}

    def apply(row: int, cells: dict[str, str]) -> None:
        medium = cells["medium"].lower() or "chip"
        if medium not in cards.MEDIA:
            raise _Cell("medium", f"must be one of {', '.join(cards.MEDIA)}")
        try:
            number = cards.parse_number(cells["number"], medium)
        except ConfigError as exc:
            raise _Cell("number", str(exc.args[0])) from None      # never the number itself
        if number in numbers:
            raise _Cell("number", f"the same card number as row {numbers[number]}")
        numbers[number] = row
        status = cells["status"].lower() or "new"
        if status not in ("new", "active"):
            raise _Cell("status", "an imported card is new or active")
        expiry, account_id = _expiry(cells["expiry"]), _ident(cells["account"], "account")
        account = s.get(Account, account_id)
        if account is None or account.kind != "fleet":
            raise _Cell("account", "no fleet account has this id")
        caps = {c: _hundredths(cells[c], c) for c in LIMIT_COLUMNS if cells[c]}
        vehicle = _vehicle(s, account_id, cells["vehicle"], actor=actor, now=now)
        driver = _driver(s, account_id, cells["driver"], actor=actor, now=now)
        card = cards.issue_card(s, keys, account_id, number, medium=medium, expiry=expiry, pin=None,
                                vehicle_id=vehicle, driver_id=driver, activate=status == "active",
                                actor=actor, now=now)
        for column, value in caps.items():
            period, unit = LIMIT_COLUMNS[column]
            admin.set_limit(s, "card", card.id, period, unit, value, reason=REASON, actor=actor, now=now)
        done.created.append(card.id)

    _each(s, rows, apply, CARD_COLUMNS)
    if done.created:
        admin.audit(s, actor=actor, action="card.import", subject="cards", now=now, created=len(done.created))
    return done
