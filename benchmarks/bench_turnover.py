"""Turnover reports over a year of a network's sales on PostgreSQL (issue 16, "How it is checked").

Makes 100 stations (in three time zones), 200 fleet customers with 400 accounts and 2,000 cards, and a year
of sales (5 million by default, a quarter of them on fleet cards; a few held or voided), generated in SQL
with generate_series. Then runs the rollup over them (registry.turnover_rollup, in steps) and times each
report twice: through registry.turnover's plan (the daily summary plus the sales above its watermark) and
straight over transactions, then again with 20,000 late sales stored after the rollup (read straight as the
summary's tail). Exits 1 when a planned report takes a second or more.

What makes them fast:
- `sales_daily` (day, station, pump, product): a year of 100 stations with 8 pumps and 4 products is
  ~880,000 rows instead of 5 million sales; reports by station, pump, product or day read it (its primary
  key leads with the day).
- `sales_daily_accounts` (day, account, product): ~515,000 rows; reports by customer, or of one customer.
- The summary's tail (sales above the watermark) is a range of the primary key of transactions; the
  voids since the rollup are found by the audit's entries above its own watermark.
- Reports neither summary answers go to transactions by index: one card's sales by
  ix_transactions_card_finished (card_id, finished_at), one station's by ix_transactions_station_finished
  (station_id, finished_at), one customer's by ix_transactions_account_finished (account_id, finished_at).
  Their cost grows with the sales they cover: a report by customer over ten stations (500,000 sales)
  reads them straight in about a second (station managers, who see no fleet customer, never ask it).

Measured on a shared 2-core machine, 5,000,000 sales (PostgreSQL 15), planned (straight): a year per
station 0.21 s (1.9 s), per product 0.17 s (2.3 s), per customer 0.17 s (1.3 s), per day 0.22 s (48 s: a
local day per sale in Python), one station per pump 0.10 s (0.34 s), one station per customer 0.26 s,
one card 0.005 s, a manager's ten stations per pump 0.10 s (1.5 s); with 20,000 late sales above the
watermark 0.09-0.25 s. The first rollup over the year took 123 s in 10 steps of 500,000 sales (about
12 s each, during which ingestion waits: the registry's worker takes 50,000 at a time); rolling up the
20,000 late sales 2 s.

Run: .venv/bin/python benchmarks/bench_turnover.py [--sales 5000000] [--db postgresql://...] (without --db
it starts a throwaway cluster as tests/pg_server.py does; the given database must be empty).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from registry.db import open_database
from registry.models import SalesDaily, SalesDailyAccount, Transaction
from registry.turnover import TurnoverQuery, turnover
from registry.turnover_rollup import roll_up

STATIONS, CUSTOMERS, ACCOUNTS, CARDS = 100, 200, 400, 2000
YEAR = dt.date(2025, 1, 1), dt.date(2025, 12, 31)
ZONES = ("Europe/Berlin", "Europe/Moscow", "UTC")
LIMIT_S = 1.0
NOW = dt.datetime(2026, 1, 2, 12, 0)


@contextmanager
def database(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_server import postgres_server
    with tempfile.TemporaryDirectory(prefix="bench-turnover-") as work, postgres_server(Path(work)) as found:
        yield found


def seed(s: Session) -> None:
    """Stations, products, customers, accounts and cards, in SQL."""
    zones = ", ".join(f"'{z}'" for z in ZONES)
    s.execute(text(f"INSERT INTO stations (id, name, currency, timezone) "
                   f"SELECT 'ST' || lpad(g::text, 3, '0'), 'Station ' || g, 'EUR', "
                   f"(ARRAY[{zones}])[1 + g % {len(ZONES)}] "
                   f"FROM generate_series(1, {STATIONS}) g"))
    s.execute(text("INSERT INTO products (code, name, \"group\") VALUES ('DIESEL', 'Diesel', 'fuel'), "
                   "('E95', 'Super 95', 'fuel'), ('E98', 'Super 98', 'fuel'), ('ADBLUE', 'AdBlue', 'fuel')"))
    s.execute(text(f"INSERT INTO customers (id, name, kind, tax_id) "
                   f"SELECT g, 'Customer ' || g, 'company', '' FROM generate_series(1, {CUSTOMERS}) g"))
    s.execute(text(f"INSERT INTO accounts (id, name, customer_id, status, kind, prompts, timezone, auth_seq) "
                   f"SELECT g, 'Account ' || g, 1 + (g - 1) % {CUSTOMERS}, 'active', 'fleet', '', 'UTC', 0 "
                   f"FROM generate_series(1, {ACCOUNTS}) g"))
    s.execute(text(f"INSERT INTO cards (id, token, masked, account_id, expiry, pin_verifier, pin_tries, "
                   f"status, medium) SELECT g, md5('card' || g), '7000 **** **** ' || lpad(g::text, 4, '0'), "
                   f"1 + (g - 1) % {ACCOUNTS}, '2912', '', 0, 'active', 'chip' "
                   f"FROM generate_series(1, {CARDS}) g"))
    s.commit()


def sales(s: Session, count: int, first: int, *, late: bool = False) -> None:
    """`count` sales spread over the year (late: spread over it too, stored after the rest)."""
    span = f"(g - {first})::float8 / {count}" if not late else "random()"
    s.execute(text(f"""
        INSERT INTO transactions (id, sale_id, seq, kind, card_id, account_id, device_id, station_id, pump,
            nozzle, product, volume_cl, amount_cents, price_milli, card_masked, finished_at, received_at,
            recovered, flags, held)
        SELECT g, md5(g::text), g, CASE WHEN fleet THEN 'fleet' ELSE 'bank' END,
            CASE WHEN fleet THEN card END, CASE WHEN fleet THEN 1 + (card - 1) % {ACCOUNTS} END,
            'T' || station, 'ST' || lpad(station::text, 3, '0'), 1 + (g / 7) % 8, 1,
            (ARRAY['DIESEL', 'E95', 'E98', 'ADBLUE'])[1 + (g / 3) % 4], volume, volume * 1659 / 1000, 1659,
            '4111 **** **** 1111', timestamp '2025-01-01' + {span} * interval '365 days', now(), false,
            CASE WHEN g % 997 = 0 THEN 'voided' ELSE '' END, g % 499 = 0
        FROM (SELECT g, random() < 0.25 AS fleet, 1 + floor(random() * {CARDS})::int AS card,
                     1 + (g * 31) % {STATIONS} AS station, 200 + (g * 104729) % 7000 AS volume
              FROM generate_series({first}::bigint, {first + count - 1}::bigint) g) AS made"""))
    s.commit()


def timed(work: Callable[[], object], runs: int = 3, *, warm: bool = True) -> tuple[float, object]:
    """Best wall time of `runs` (after one warm-up) and the last result."""
    result = work() if warm else None
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def reports(made: sessionmaker[Session], label: str) -> bool:
    start, end = YEAR
    customer = 7
    ten = frozenset(f"ST{n:03d}" for n in range(1, 11))
    cases = [("per station, the year", TurnoverQuery(start, end, by="station")),
             ("per product, the year", TurnoverQuery(start, end, by="product")),
             ("per customer, the year", TurnoverQuery(start, end, by="customer")),
             ("per day, the year", TurnoverQuery(start, end, by="day")),
             ("per pump of one station", TurnoverQuery(start, end, by="pump", station="ST001")),
             ("one customer per product", TurnoverQuery(start, end, by="product", customer_id=customer)),
             ("one card per station", TurnoverQuery(start, end, by="station", card_id=42)),
             ("one station per customer", TurnoverQuery(start, end, by="customer", station="ST001")),
             ("10 stations' manager per pump", TurnoverQuery(start, end, by="pump", stations=ten))]
    print(f"\n{label}")
    # the limit holds for the first answer (nothing cached by this session yet); "best" is of 3 more
    print(f"{'report':36} {'path':16} {'planned 1st':>11} {'best':>6} {'straight 1st':>12} {'lines':>6}  "
          "equal")
    fine = True
    for name, q in cases:
        with made() as s:
            first_s, _ = timed(lambda q=q, s=s: turnover(s, q), runs=1, warm=False)
            fast_s, fast = timed(lambda q=q, s=s: turnover(s, q), warm=False)
            slow_s, slow = timed(lambda q=q, s=s: turnover(s, q, path="straight"), runs=1, warm=False)
        same = fast.lines == slow.lines                      # type: ignore[attr-defined]
        fine = fine and same and first_s < LIMIT_S
        print(f"{name:36} {fast.path:16} {first_s:11.3f} {fast_s:6.3f} {slow_s:12.3f} "  # type: ignore[attr-defined]
              f"{len(fast.lines):6}  {'yes' if same else 'NO'}")
    return fine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=5_000_000)
    parser.add_argument("--db", help="an empty PostgreSQL database (default: a throwaway cluster)")
    args = parser.parse_args()
    with database(args.db) as url:
        engine, made = open_database(url)
        try:
            with made() as s:
                seed(s)
                started = time.perf_counter()
                sales(s, args.sales, 1)
                made_s = time.perf_counter() - started
                s.execute(text("ANALYZE transactions"))
                s.commit()
                print(f"{args.sales:,} sales of {STATIONS} stations made in {made_s:.1f} s")
            started = time.perf_counter()
            steps = 0
            while True:
                with made() as s:
                    rolled = roll_up(s, NOW, most=500_000)
                    s.commit()
                steps += 1
                if not rolled.more:
                    break
            with made() as s:
                s.execute(text("ANALYZE sales_daily"))
                s.execute(text("ANALYZE sales_daily_accounts"))
                s.commit()
                daily = s.scalar(select(func.count()).select_from(SalesDaily))
                accounts = s.scalar(select(func.count()).select_from(SalesDailyAccount))
            print(f"rollup of the history: {time.perf_counter() - started:.1f} s in {steps} steps; "
                  f"sales_daily {daily:,} rows, sales_daily_accounts {accounts:,} rows")
            fine = reports(made, "After the rollup")
            with made() as s:
                top = int(s.scalar(select(func.max(Transaction.id))) or 0)
                sales(s, 20_000, top + 1, late=True)
                s.execute(text("ANALYZE transactions"))
                s.commit()
            fine = reports(made, "With 20,000 late sales above the watermark") and fine
            started = time.perf_counter()
            with made() as s:
                rolled = roll_up(s, NOW)
                s.commit()
            print(f"\nrollup of the 20,000 late sales: {time.perf_counter() - started:.2f} s")
        finally:
            engine.dispose()
    print("all planned reports under a second and equal to the straight sums" if fine else "FAILED")
    return 0 if fine else 1


if __name__ == "__main__":
    sys.exit(main())
