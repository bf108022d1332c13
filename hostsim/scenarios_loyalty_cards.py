"""Issue 15 scenarios with prepaid and gift cards at the pump: gift-card-bonus and
purpose-restricted-shop-only. The operator sells the cards with `forecourt registry prepaid` and
`topup-bonus`; the terminal takes them as fleet cards (their chips carry the fleet card record) and the
registry authorizes them from their credits (docs/prepaid.md).
"""

from __future__ import annotations

from typing import Any

from hostsim.scenarios_fleet2 import authorize, declined, settle
from hostsim.scenarios_loyalty_kit import (
    EXPIRY,
    card_of,
    chip,
    ledger,
    must,
    number_in,
    operator,
    sale_amount,
    wallets_of,
)

__all__ = ["CARD_SCENARIOS", "PIN", "fuel_sale", "issue"]

PIN = "1234"
GIFT_PAN = "7077021000000017"
SHOP_PAN, MIXED_PAN = "7077021000000025", "7077021000000033"
AUTHORIZE = b"\x06"              # the DART authorize command (hostsim.scenarios.AUTHORIZE)


def issue(run: Any, kind: str, pan: str, *credits: str, amount: str = "", key: str = "") -> tuple[int, int]:
    """A prepaid or gift card sold at the till (number and PIN piped in): (card id, account id)."""
    args = ["prepaid", "issue", "--kind", kind, "--number", "-", "--pin", "--expiry", EXPIRY]
    for credit in credits:
        args += ["--credit", credit]
    if amount:
        args += ["--amount", amount, "--key", key]
    out = must(run, *args, stdin=f"{pan}\n{PIN}\n", keys=True)
    return number_in(out, r"card (\d+)"), number_in(out, r"account (\d+)")


def fuel_sale(run: Any, pan: str, holder: str, volume_cl: int = 1000) -> tuple[Any, int]:
    """A diesel sale on pump 1 with this chip card: the synced record and the receipts printed since."""
    printed = len(run.sim.printer.receipts)
    mark = chip(run, pan, holder)
    screen = authorize(run, mark)
    run.check(screen["screen"] == "lift_nozzle", f"card ...{pan[-4:]} approved, got {screen['fields']}")
    run.fill(1, 1, volume_cl)
    rec = settle(run, mark)
    run.remove()
    run.wait("idle", mark)
    run.sim.printer.wait_receipts(printed + 1, 10)
    return rec, printed


def _authorizations(run: Any) -> int:
    """How many times the terminal released pump 1 so far."""
    return sum(cmd[:1] == AUTHORIZE for cmd in run.sim.pump_line.sent_commands(1))


def gift_card_bonus(run: Any) -> None:
    """Gift cards get 10 % on top from 50.00 paid: 100.00 paid gives 110.00 (the bonus a movement apart);
    the card pays 10 L of diesel; the balance is the sum of its movements; a refund is refused."""
    run.ready()
    must(run, "topup-bonus", "add", "--kind", "gift", "--min", "50", "--pct", "10")
    card, account = issue(run, "gift", GIFT_PAN, "fuel=group:fuel")
    out = must(run, "prepaid", "topup", "--card", str(card), "--amount", "100", "--key", "GIFT-TILL1-0001")
    run.check("paid 100.00" in out and "bonus 10.00" in out and "balance 110.00" in out,
              f"the till shows 100.00 paid, 10.00 bonus, 110.00 on the card: {out.strip()}")
    [wallet] = wallets_of(run.sim, account).values()
    rec, printed = fuel_sale(run, GIFT_PAN, "GIFT CARD")
    cents = sale_amount(1000)
    run.check(rec.synced and rec.volume_cl == 1000 and rec.amount_cents == cents,
              f"10.00 L for {cents} cents acknowledged ({rec.volume_cl}, {rec.amount_cents})")
    receipt = run.sim.printer.receipts[printed]
    run.check("707702******0017" in receipt and f"{cents / 100:.2f}" in receipt and GIFT_PAN not in receipt,
              "the receipt shows the masked gift card and the amount paid")
    led = ledger(run.sim, wallet)
    moves = led["movements"]
    run.check([(k, a) for k, a, _ in moves] == [("topup", 10000), ("bonus", 1000), ("sale", -cents)],
              f"paid, bonus apart, the sale: {moves}")
    run.check([key for _, _, key in moves[:2]] == ["topup:GIFT-TILL1-0001", "bonus:GIFT-TILL1-0001"],
              "the bonus is keyed by the payment it came with")
    run.check(led["balance"] == led["sum"] == 11000 - cents, f"balance = sum of movements: {led}")
    done = operator(run, "prepaid", "refund", "--card", str(card), "--key", "GIFT-TILL1-0002",
                    "--reason", "customer returns the card")
    run.check(done.code == 1 and "gift" in done.err,
              f"a gift card refund is refused ({done.code}: {done.err})")
    after = ledger(run.sim, wallet)
    run.check(after == led, "the refused refund booked nothing")


def purpose_restricted_shop_only(run: Any) -> None:
    """A card whose only credit is for the shop is declined at the pump (product not allowed, shown to the
    driver); a card with a shop and a fuel credit pays diesel from the fuel credit alone."""
    run.ready()
    issue(run, "prepaid", SHOP_PAN, "shop=group:shop", amount="50", key="SHOP-TILL1-0001")
    released = _authorizations(run)
    mark = chip(run, SHOP_PAN, "SHOP CARD")
    screen = authorize(run, mark)
    lines = " | ".join(screen.get("lines", []))
    run.check("Product not allowed" in lines, f"the driver reads why: {lines}")
    declined(run, mark, screen, "product_not_allowed")
    run.check(_authorizations(run) == released, "pump 1 was not released")
    _, account = issue(run, "prepaid", MIXED_PAN, "shop=group:shop", "fuel=group:fuel", amount="30",
                       key="MIX-TILL1-0001")
    credits = wallets_of(run.sim, account)
    must(run, "prepaid", "topup", "--card", str(card_of(run.sim, MIXED_PAN)), "--wallet",
         str(credits["fuel"]), "--amount", "40", "--key", "MIX-TILL1-0002")
    rec, _ = fuel_sale(run, MIXED_PAN, "SHOP AND FUEL CARD")
    cents = sale_amount(1000)
    fuel, shop = ledger(run.sim, credits["fuel"]), ledger(run.sim, credits["shop"])
    run.check(rec.synced and rec.amount_cents == cents, f"diesel sold for {cents} cents")
    run.check(fuel["movements"][-1][:2] == ("sale", -cents)
              and fuel["balance"] == fuel["sum"] == 4000 - cents, f"the fuel credit paid: {fuel}")
    run.check(shop["balance"] == shop["sum"] == 3000 and [k for k, _, _ in shop["movements"]] == ["topup"],
              f"the shop credit is untouched: {shop}")


CARD_SCENARIOS = {"gift-card-bonus": gift_card_bonus,
                  "purpose-restricted-shop-only": purpose_restricted_shop_only}
