"""Fleet authorizations (registry.fleet.authorize) and completions (registry.service.record_sales) per
second, p50 and p99, on SQLite and PostgreSQL (issue 14): one account of 10,000 cards with a PIN and day/week/
month/year limits, account limits, two wallets, time windows; one database with 100 sales, one with a year
(200,000 with their authorizations, holds, movements, usage rows), taking turns with 1 and 4 threads: the year
must cost what 100 sales do. Each query of an authorization and completion is EXPLAINed; a scan of a history
table fails the run. Run: .venv/bin/python benchmarks/fleet_authorize.py [--quick] [--no-postgres] [--ops N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import secrets
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

from psec.pinblock import encipher_pinblock_iso_4
from sqlalchemy import Engine, create_engine, delete, event, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from contracts.cards import mask_number
from contracts.panseal import derive_pan_key, pin_pan, seal_pan
from registry import models as db
from registry.db import open_database
from registry.fleet import ledger, rules, usage
from registry.fleet.authorize import authorize
from registry.keys import RegistryKeys
from registry.service import record_sales

TZ, STATION, PIN = "Europe/Berlin", "ST-001", "1234"
BASE = dt.datetime(2026, 12, 1, 9, 0)            # a Tuesday: the first run's clock (naive UTC)
PRICES = {"diesel": ("019", 1659), "petrol95": ("001", 1789)}       # product: (Conexxus code3, price_milli)
WALLET_OF = {"diesel": 1, "petrol95": 2}          # who pays what (wallet priority and products below)
PERIODS, HUGE = ("day", "week", "month", "year"), 10**12
MINUTE, ROUNDS = dt.timedelta(minutes=1), 5       # ROUNDS: turns each database takes per thread count
HISTORY_TABLES = ("transactions", "movements", "authorizations", "holds", "auth_allowances", "usage")


def number(i: int) -> str:
    return f"70770010{i:08d}"


def bulk(s: Session, model: Any, cols: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert rows fast with the driver itself: COPY on PostgreSQL, executemany on SQLite."""
    raw, table = cast(Any, s.connection().connection.driver_connection), model.__tablename__
    names, marks = ", ".join(f'"{c}"' for c in cols.split()), ", ".join("?" * len(cols.split()))
    if s.get_bind().dialect.name == "postgresql":      # no foreign key triggers for this consistent load
        raw.execute("SET LOCAL session_replication_role = replica")
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        raw.execute("PRAGMA cache_size=-262144")     # 256 MiB: the load's index pages stay in memory
        raw.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


def stamp(s: Session) -> Any:
    """Datetimes as the driver takes them; for SQLite the text SQLAlchemy writes (microseconds always)."""
    sqlite = s.get_bind().dialect.name != "postgresql"
    return (lambda d: d.isoformat(" ", "microseconds")) if sqlite else (lambda d: d)


def build_account(s: Session, keys: RegistryKeys, cards: int, pumps: int) -> dict[str, bytes]:
    """Station, products, nozzles, a terminal per pump, and the account with its cards; the PIN keys."""
    s.add(db.Station(id=STATION, name="Bench", currency="EUR"))
    s.add_all(db.Product(code=p, name=p, code3=c3) for p, (c3, _) in PRICES.items())
    s.add(db.Customer(id=1, name="Haulage Ltd", kind="company", tax_id="DE123456789"))
    s.flush()                                    # no relationship() orders the inserts below after these
    s.add(db.StationGroupMember(group="north", station_id=STATION))
    pin_keys = {f"T-{p:04d}": secrets.token_bytes(16) for p in range(1, pumps + 1)}
    for p, (terminal, key) in enumerate(pin_keys.items(), start=1):
        s.add(db.Device(id=terminal, station_id=STATION, pin_key_hex=keys.seal_device_key(key)))
        s.add_all(db.Nozzle(station_id=STATION, pump=p, nozzle=n, product_code=product, price_milli=price)
                  for n, (product, (_, price)) in enumerate(PRICES.items(), start=1))
    s.add(db.Account(id=1, name="Trucks", customer_id=1, timezone=TZ, prompts=""))
    s.flush()
    s.add(db.Wallet(id=1, account_id=1, name="Diesel litres", unit="volume", mode="postpaid",
                    credit_limit=HUGE, allowed_products="019", priority=0))
    s.add(db.Wallet(id=2, account_id=1, name="Fuel money", unit="money", mode="postpaid", credit_limit=HUGE,
                    allowed_products="001-099", stations="group:north", priority=1))
    s.flush()
    tokens = {i: keys.token(number(i)) for i in range(1, cards + 1)}
    bulk(s, db.Card, "id token masked account_id expiry pin_verifier pin_tries status medium number_sealed",
         [(i, t, mask_number(number(i)), 1, "2912", keys.pin_verifier(t, PIN), 0, "active", "chip",
           keys.seal_number(number(i))) for i, t in tokens.items()])
    limits = [("account", 1, p, u, HUGE) for p in PERIODS for u in ("money", "volume")]
    limits += [("card", i, p, u, 10**6 if u == "count" else HUGE)
               for i in tokens for p in PERIODS for u in ("money", "volume", "count")]
    bulk(s, db.Limit, "scope scope_id period unit maximum", limits)
    s.add(db.TimeWindow(scope="account", scope_id=1, weekdays=127, start_minute=0, end_minute=1440))
    s.add_all(db.TimeWindow(scope="card", scope_id=i, weekdays=0b11111, start_minute=300, end_minute=1320)
              for i in range(1, cards + 1, 10))          # every tenth card: weekdays 05:00-22:00
    s.commit()
    return pin_keys


@dataclass
class Sale:
    card: int
    product: str
    volume_cl: int
    at: dt.datetime
    sale_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @cached_property
    def cents(self) -> int:
        return rules.amount_of(self.volume_cl, PRICES[self.product][1])


def usage_rows(sales: list[Sale]) -> dict[tuple[str, int, str], list[int]]:
    """What usage.record adds up for these sales, per (scope, scope_id, period_key): [cents, cl, count]."""
    keys_of: dict[dt.date, list[str]] = {}
    found: dict[tuple[str, int, str], list[int]] = {}
    for sale in sales:
        local = rules.local_time(sale.at, TZ)
        keys = keys_of.get(local.date())
        if keys is None:
            keys = keys_of[local.date()] = [k for p in usage.PERIODS if (k := rules.period_key(p, local))]
        for scope_key in (("account", 1), ("card", sale.card)):
            for key in keys:
                row = found.setdefault((*scope_key, key), [0, 0, 0])
                row[0], row[1], row[2] = row[0] + sale.cents, row[1] + sale.volume_cl, row[2] + 1
    return found


def check_usage_rows(s: Session, sales: list[Sale]) -> None:
    """The bulk usage rows equal what usage.record makes of the same sales (then rolled back)."""
    for sale in sales:
        usage.record(s, account_id=1, card_id=sale.card, tz=TZ, at_utc=sale.at, amount_cents=sale.cents,
                     volume_cl=sale.volume_cl)
    made = {(u.scope, u.scope_id, u.period_key): [u.amount_cents, u.volume_cl, u.count]
            for u in s.scalars(select(db.Usage))}
    s.rollback()
    if made != usage_rows(sales):
        raise SystemExit("bulk usage rows differ from usage.record's")


def add_history(s: Session, sales: list[Sale]) -> None:
    """Store settled sales as settlement leaves them: sale rows, completed authorizations with their
    allowance and released hold, ledger movements and balances, and the usage of every period."""
    auths: list[tuple[Any, ...]] = []
    allowances, holds, txs, moves, ts = auths.copy(), auths.copy(), auths.copy(), auths.copy(), stamp(s)
    balance = {w.id: w.balance for w in s.scalars(select(db.Wallet))}
    for sale in sorted(sales, key=lambda x: x.at):
        auth_id, wallet, product, at = str(uuid.uuid4()), WALLET_OF[sale.product], sale.product, ts(sale.at)
        allowed, price, cents = rules.amount_of(150_00, PRICES[product][1]), PRICES[product][1], sale.cents
        created, expires = ts(sale.at - MINUTE * 5), ts(sale.at + MINUTE * 25)
        auths.append((auth_id, sale.card, wallet, "T-0001", 1, 150_00, "completed", created, expires, 1,
                      allowed))
        allowances.append((auth_id, product, wallet, 150_00, allowed))
        holds.append((auth_id, wallet, 150_00 if wallet == 1 else allowed, expires, True))
        txs.append((sale.sale_id, "fleet", auth_id, sale.card, wallet, 1, "T-0001", STATION, 1,
                    1 + list(PRICES).index(product), product, sale.volume_cl, cents, price,
                    mask_number(number(sale.card)), at, at, False, "", False))
        amount = sale.volume_cl if wallet == 1 else cents
        balance[wallet] -= amount
        moves.append((f"sale:{sale.sale_id}", wallet, "sale", -amount, balance[wallet], at, sale.sale_id,
                      auth_id, "registry", "fleet"))
    bulk(s, db.Authorization, "id card_id wallet_id device_id pump allowed_cl status created_at expires_at "
         "account_id allowed_cents", auths)
    bulk(s, db.AuthAllowance, "auth_id product wallet_id volume_cl amount_cents", allowances)
    bulk(s, db.Hold, "auth_id wallet_id amount expires_at released", holds)
    bulk(s, db.Transaction, "sale_id kind auth_id card_id wallet_id account_id device_id station_id pump "
         "nozzle product volume_cl amount_cents price_milli card_masked finished_at received_at recovered "
         "flags held", txs)
    bulk(s, db.Movement, "key wallet_id kind amount balance_after at sale_id auth_id actor reason", moves)
    for wallet_id, value in balance.items():
        s.execute(update(db.Wallet).where(db.Wallet.id == wallet_id).values(balance=value))
    merged = usage_rows(sales)           # with the usage already kept, written again in one go
    for u in s.scalars(select(db.Usage)):
        row = merged.setdefault((u.scope, u.scope_id, u.period_key), [0, 0, 0])
        row[0], row[1], row[2] = row[0] + u.amount_cents, row[1] + u.volume_cl, row[2] + u.count
    s.execute(delete(db.Usage))
    s.expunge_all()
    bulk(s, db.Usage, "scope scope_id period_key amount_cents volume_cl count",
         [(*k, *v) for k, v in merged.items()])
    s.commit()


@dataclass
class Run:
    """Latencies (s) of authorizations and of completions, failures by kind, and the seconds taken."""
    auth: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, why: str) -> None:
        with self.lock:
            self.failures[why] = self.failures.get(why, 0) + 1


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000 if ordered else 0.0


def request(pump: int, pin_key: bytes, card: int) -> dict[str, Any]:
    """A decoded AUTH_REQUEST as the terminal of this pump sends it: the number sealed, PIN block format 4."""
    rid, terminal = str(uuid.uuid4()), f"T-{pump:04d}"
    return {"request_id": rid, "terminal": terminal, "station": STATION, "pump": pump,
            "pan_sealed": seal_pan(derive_pan_key(pin_key), number(card), request_id=rid, terminal=terminal,
                                   station=STATION), "expiry": "2912",
            "pin_block": encipher_pinblock_iso_4(pin_key, PIN, pin_pan(number(card))).hex().upper(),
            "medium": "chip", "prompts": {}}


def one(s: Session, keys: RegistryKeys, req: dict[str, Any], clock: Any, run: Run,
        rng: random.Random) -> None:
    """Authorize, then complete the sale on the first nozzle offered (a SALE as decoded)."""
    start = time.perf_counter()
    answer = authorize(s, keys, req, clock())
    authorized = time.perf_counter()
    if not answer.approved:
        run.fail(f"declined:{answer.reason}")
        return
    nozzle = answer.allowances[0]
    volume, price = min(nozzle.volume_cl, rng.randint(10_00, 60_00)), PRICES[nozzle.product][1]
    sale = {"sale_id": str(uuid.uuid4()), "kind": "fleet", "auth_id": answer.auth_id,
            "terminal": req["terminal"], "station": STATION, "pump": req["pump"], "nozzle": nozzle.nozzle,
            "product": nozzle.product, "volume_cl": volume, "price_milli": price,
            "amount_cents": rules.amount_of(volume, price), "card_masked": answer.card_masked,
            "finished_at": clock().strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "recovered": False, "flags": []}
    ack = record_sales(s, [sale], clock(), keys)[0]
    finished = time.perf_counter()
    if ack is None or ack["status"] != "stored" or ack["reason"]:
        run.fail(f"sale:{ack}")
    with run.lock:
        run.auth.append(authorized - start)
        run.done.append(finished - authorized)


def measure(sessions: sessionmaker[Session], keys: RegistryKeys, pin_keys: dict[str, bytes], run: Run, *,
            ops: int, threads: int, cards: int, start_at: dt.datetime) -> None:
    """`ops` authorizations and completions from `threads` pumps at once, added to `run`."""
    rng = random.Random(threads)
    work = [[request(t, pin_keys[f"T-{t:04d}"], rng.randint(1, cards)) for _ in range(ops // threads)]
            for t in range(1, threads + 1)]
    began = time.monotonic()

    def clock() -> dt.datetime:
        return start_at + dt.timedelta(seconds=time.monotonic() - began)

    def pump(reqs: list[dict[str, Any]]) -> None:
        local = random.Random(reqs[0]["request_id"])
        with sessions() as s:
            for req in reqs:
                try:
                    one(s, keys, req, clock, run, local)
                except Exception as exc:        # noqa: BLE001 - counted and shown, the run goes on
                    s.rollback()
                    run.fail(type(exc).__name__)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(pump, work))
    run.seconds += time.monotonic() - began


def plans(engine: Engine, sessions: sessionmaker[Session], keys: RegistryKeys, pin_keys: dict[str, bytes],
          at: dt.datetime) -> list[str]:
    """EXPLAIN each query of an authorization and completion, print the plans' key lines; history scans."""
    pg, statements = engine.dialect.name == "postgresql", []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if not many and statement.split()[0].upper() in ("SELECT", "UPDATE", "DELETE"):
            statements.append((statement, params))
    event.listen(engine, "before_cursor_execute", seen)
    with sessions() as s:
        one(s, keys, request(1, pin_keys["T-0001"], 7), lambda: at, Run(), random.Random(1))
    event.remove(engine, "before_cursor_execute", seen)
    with engine.connect() as conn:
        size = {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in HISTORY_TABLES}
        print(f"  query plans ({'EXPLAIN' if pg else 'EXPLAIN QUERY PLAN'}) with "
              + ", ".join(f"{n} {t}" for t, n in size.items()))
        bad: list[str] = []
        for head, (sql, params) in {" ".join(q.split()): (q, v) for q, v in statements}.items():
            rows = conn.exec_driver_sql(("EXPLAIN " if pg else "EXPLAIN QUERY PLAN ") + sql, params).all()
            lines = [str(r[0]).strip() for r in rows] if pg else [str(r[-1]) for r in rows]
            key = [ln.lstrip("-> ") for ln in lines if re.search(r"Scan|SCAN|SEARCH|Cond", ln)]
            print(f"    {head[:100]}\n      " + " | ".join(key)[:200])
            for ln in key:
                hit = re.match(r"(?:Seq Scan on|SCAN) (\w+)(?! USING (?:COVERING )?INDEX)", ln)
                if hit and hit.group(1) in HISTORY_TABLES:
                    bad.append(f"{hit.group(1)}: {ln} in {head[:80]}")
    return bad


@dataclass
class Db:
    label: str
    engine: Engine
    sessions: sessionmaker[Session]
    pin_keys: dict[str, bytes]
    sales: int
    runs: dict[int, Run] = field(default_factory=dict)


def prepare(url: str, label: str, keys: RegistryKeys, args: argparse.Namespace, rng: random.Random) -> Db:
    """The account and its history: 100 sales (checked against usage.record) or a year of them."""
    started = time.monotonic()
    engine, sessions = open_database(url)
    with sessions() as s:
        pin_keys = build_account(s, keys, args.cards, max(args.threads))
        sales = [Sale(rng.randint(1, args.cards), rng.choice(list(PRICES)), rng.randint(10_00, 80_00),
                      BASE - dt.timedelta(seconds=rng.randint(60, 365 * 86400)))      # over the year before
                 for _ in range(100 if label == "small" else args.sales)]
        if label == "small":
            check_usage_rows(s, sales)
        add_history(s, sales)
    if engine.dialect.name == "postgresql":      # what autovacuum would have done after the bulk load
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    print(f"  {label} history: {args.cards} cards, {args.cards * 12 + 8} limits, {len(sales)} sales; "
          f"built in {time.monotonic() - started:.1f} s")
    return Db(label, engine, sessions, pin_keys, len(sales))


def bench(urls: tuple[str, str], name: str, args: argparse.Namespace) -> bool:
    """The same runs on both databases, taking turns (ROUNDS each), so that the machine's load hits both."""
    print(f"{name} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):")
    keys, rng = RegistryKeys(*(secrets.token_bytes(32) for _ in range(3))), random.Random(14)
    dbs = [prepare(url, label, keys, args, rng) for url, label in zip(urls, ("small", "year"), strict=True)]
    turn = 0                   # each run starts 10 minutes after the last (the clock only moves on)
    for n in args.threads:
        for _ in range(ROUNDS):
            for d in dbs:
                measure(d.sessions, keys, d.pin_keys, d.runs.setdefault(n, Run()), ops=args.ops // ROUNDS,
                        threads=n, cards=args.cards, start_at=BASE + MINUTE * 10 * turn)
                turn += 1
        for d in dbs:
            run = d.runs[n]
            both = [a + b for a, b in zip(run.auth, run.done, strict=True)]
            print(f"  {d.label} history ({d.sales} sales), {n} thread(s): {len(both) / run.seconds:.0f} "
                  f"authorizations+completions/s; authorize p50 {pct(run.auth, .5):.1f} ms p99 "
                  f"{pct(run.auth, .99):.1f} ms; completion p50 {pct(run.done, .5):.1f} ms p99 "
                  f"{pct(run.done, .99):.1f} ms; both p99 {pct(both, .99):.1f} ms; "
                  f"failures {run.failures or 0}")
        small, year = dbs[0].runs[n], dbs[1].runs[n]
        ratio = pct(year.auth, .5) / pct(small.auth, .5), pct(year.done, .5) / pct(small.done, .5)
        print(f"  year / small, {n} thread(s): p50 authorize x{ratio[0]:.2f}, completion x{ratio[1]:.2f}")
    bad = plans(dbs[1].engine, dbs[1].sessions, keys, dbs[1].pin_keys, BASE + MINUTE * 10 * turn)
    print("  " + ("; ".join(bad) if bad else "no query of an authorization or completion scans a history "
                  f"table ({', '.join(HISTORY_TABLES)})"))
    ok = not bad and not any(run.failures for d in dbs for run in d.runs.values())
    for d in dbs:
        with d.sessions() as s:
            wrong = ledger.check(s)
        print(f"  ledger ({d.label}):", f"DIFFERS {wrong}" if wrong else "balances are sums of movements")
        ok = ok and not wrong
        d.engine.dispose()
    return ok


def postgres(tmp: Path, args: argparse.Namespace) -> bool:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pg_server import PostgresUnavailable, postgres_server  # type: ignore[import-not-found]
    try:
        with postgres_server(tmp) as url:
            admin = create_engine(url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql("CREATE DATABASE forecourt_year")
            admin.dispose()
            return bench((url, url.rsplit("/", 1)[0] + "/forecourt_year"), "postgresql", args)
    except PostgresUnavailable as exc:
        print(f"postgresql: skipped ({exc})")
        return True


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1,000 cards, 5,000 sales, 40 ops")
    ap.add_argument("--cards", type=int, default=10_000)
    ap.add_argument("--sales", type=int, default=200_000, help="the year's sales (default 200,000)")
    ap.add_argument("--ops", type=int, default=400, help="authorizations per database and threads (400)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.cards, args.sales, args.ops = 1000, 5000, 40
    with tempfile.TemporaryDirectory() as tmp:
        ok = bench((f"sqlite:///{tmp}/small.db", f"sqlite:///{tmp}/year.db"), "sqlite", args)
        ok = (args.no_postgres or postgres(Path(tmp), args)) and ok
    print("result:", "ok" if ok else "FAILED (a failure, a history scan or a ledger difference above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
