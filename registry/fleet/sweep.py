"""The registry's fleet housekeeping, every hour: cards past their expiry month become "expired", and a
prepaid wallet past its expiry date gives up its balance (an expiry movement, once a day per wallet, so
what open authorizations still held is taken by the next day's sweep)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from registry.fleet import ledger
from registry.fleet.cards import expire_cards
from registry.models import Movement, Wallet
from registry.ticker import Ticker

__all__ = ["PERIOD", "FleetSweep", "sweep"]

log = logging.getLogger(__name__)

PERIOD = 3600.0          # seconds between sweeps


def sweep(s: Session, now: dt.datetime) -> tuple[int, int]:
    """One sweep, committed: (cards expired, wallets expired)."""
    cards = expire_cards(s, now)
    s.commit()
    wallets = 0
    due = s.scalars(select(Wallet.id).where(Wallet.mode == "prepaid", Wallet.expires_on.is_not(None),
                                            Wallet.expires_on < now.date() + dt.timedelta(days=1),
                                            Wallet.balance > 0).order_by(Wallet.id)).all()
    for wallet_id in due:
        wallet = s.get(Wallet, wallet_id)
        if wallet is None:
            continue
        key = f"expiry:{wallet.id}:{now:%Y-%m-%d}"
        ledger.lock_account(s, wallet.account_id)
        s.refresh(wallet)
        booked = s.scalar(select(Movement.id).where(Movement.key == key)) is not None
        if ledger.expire(s, wallet, key=key, now=now, actor="system") is not None and not booked:
            wallets += 1
        s.commit()
    if cards or wallets:
        log.info("fleet sweep", extra={"cards_expired": cards, "wallets_expired": wallets})
    return cards, wallets


class FleetSweep:
    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], dt.datetime], *,
                 period: float = PERIOD) -> None:
        self.sessions, self.clock = sessions, clock
        self._ticker = Ticker("registry-fleet-sweep", self.tick, period, log=log, failed="fleet sweep failed")

    def tick(self) -> None:
        with self.sessions() as s:
            sweep(s, self.clock())

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()
