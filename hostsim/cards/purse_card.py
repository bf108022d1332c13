"""The fleet card with a purse: the fleet applet and the purse application behind one VirtualCard.

SELECT by AID picks the application the next commands go to (the fleet applet until one is selected);
power-on, power-off and reset reach both. `personalize` plays the card bureau: the card makes its own P-256
key pair, the issuer (a callable here) certifies the public key, and the card receives its keys (already
derived from the issuer's masters: the card never sees a master), its PIN and its wallets.

A torn command (`tear_at`) stops as a pulled card would: with `on_tear` (the simulator's slot removal) set,
it runs and apdu() answers nothing (the server's connection is already closed); without, CardTorn leaves
apdu().
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric import ec

from contracts.errors import ConfigError
from contracts.purse_apdu import INS_SELECT, PURSE_AID
from contracts.purse_keys import Purpose
from contracts.purse_session import Role, load_public_key, open_certificate, public_bytes
from contracts.purse_wallets import Wallet
from hostsim.cards.fleet import FleetCard
from hostsim.cards.iso7816 import split_apdu
from hostsim.cards.purse import PurseApplet
from hostsim.cards.purse_state import CardTorn, Cmd, PurseKeys, PurseState, Stored, Tear

__all__ = ["PurseCard", "personalize"]


class PurseCard:
    """One chip with two applications: the fleet applet (identification) and the purse (value)."""

    def __init__(self, fleet: FleetCard, purse: PurseApplet,
                 on_tear: Callable[[], None] | None = None) -> None:
        self.fleet = fleet
        self.purse = purse
        self.atr = fleet.atr
        self.on_tear = on_tear
        self._purse_selected = False

    def __repr__(self) -> str:
        return f"PurseCard({self.fleet!r}, purse_id={self.purse.state.keys.card_id.hex()})"

    @property
    def state(self) -> PurseState:
        return self.purse.state

    def tear_at(self, command: Cmd | str, when: Tear | str) -> None:
        """The next such purse command stops as if the card was pulled before or after its commit."""
        self.purse.state.tear_at(command, when)

    def power_on(self) -> None:
        self.fleet.power_on()
        self.purse.power_off()
        self._purse_selected = False

    def power_off(self) -> None:
        self.fleet.power_off()
        self.purse.power_off()
        self._purse_selected = False

    def reset(self) -> None:
        self.fleet.reset()
        self.purse.reset()
        self._purse_selected = False

    def apdu(self, command: bytes) -> bytes:
        parts = split_apdu(command)
        if parts is not None and parts[0] == 0x00 and parts[1] == INS_SELECT and parts[2] == 0x04:
            self._purse_selected = parts[4] == PURSE_AID
            if self._purse_selected:
                self.fleet.reset()
            else:
                self.purse.selected = False
                self.purse.drop_session()
        if not self._purse_selected:
            return self.fleet.apdu(command)
        try:
            return self.purse.apdu(command)
        except CardTorn:
            self.power_off()
            if self.on_tear is None:
                raise
            self.on_tear()          # the slot is emptied: the reader never gets this answer
            return b""


def personalize(fleet: FleetCard, *, purse_id: bytes, keys: Mapping[tuple[Purpose, int], bytes], pin: str,
                wallets: Sequence[Wallet], ca_public_key: ec.EllipticCurvePublicKey | bytes,
                certify: Callable[[bytes], bytes], on_tear: Callable[[], None] | None = None) -> PurseCard:
    """A fleet card with a fresh purse. keys: the card's own AES keys by (purpose, version), derived by
    the issuer with contracts.purse_keys.derive_card_key; certify: the issuer's side, the compressed
    public key in, the card's certificate (contracts.purse_session.issue_certificate) out."""
    ca = load_public_key(ca_public_key) if isinstance(ca_public_key, bytes) else ca_public_key
    private_key = ec.generate_private_key(ec.SECP256R1())   # made on the card: only its public half leaves
    public = public_bytes(private_key)
    certificate = certify(public)
    cert = open_certificate(ca, certificate, role=Role.CARD, now=0)
    if cert.id != purse_id or cert.public_key != public:
        raise ConfigError("the certificate is not this card's", purse_id=purse_id.hex())
    state = PurseState(PurseKeys(purse_id, keys, pin), Stored.fresh(tuple(wallets)))
    return PurseCard(fleet, PurseApplet(state, private_key, certificate, ca), on_tear)
