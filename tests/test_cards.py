"""contracts.cards: PAN masking (PCI DSS 3.4), Luhn check digit, keyed card token."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.cards import card_token, luhn_ok, mask_pan


@pytest.mark.parametrize(("pan", "masked"), [
    ("7077001000000019", "707700******0019"),            # 16 digits: first 6 + last 4
    ("7083123456789012345", "708312*********2345"),     # 19 digits
    ("4111111111111111", "411111******1111"),
    ("4222222222222", "*********2222"),                  # 13 digits: last 4 only
    ("378282246310005", "***********0005"),             # 15 digits: last 4 only
    ("708312345678", "********5678"),                    # 12 digits
])
def test_mask_pan(pan: str, masked: str) -> None:
    assert mask_pan(pan) == masked
    assert len(mask_pan(pan)) == len(pan)


@settings(max_examples=200)
@given(pan=st.from_regex(r"[0-9]{12,19}", fullmatch=True))
def test_mask_pan_property(pan: str) -> None:
    masked = mask_pan(pan)
    assert len(masked) == len(pan)
    assert masked.endswith(pan[-4:])
    shown = [c for c in masked if c != "*"]
    assert len(shown) <= 10                             # never more than 6 + 4 digits visible
    if len(pan) >= 16:
        assert masked[:6] == pan[:6] and masked[6:-4] == "*" * (len(pan) - 10)
    else:
        assert masked[:-4] == "*" * (len(pan) - 4)
    # every visible digit is where it was in the number
    assert all(m == "*" or m == p for m, p in zip(masked, pan))
    assert pan not in masked


@pytest.mark.parametrize("pan", [
    "79927398713",          # the worked example of the Luhn algorithm (Wikipedia, "Luhn algorithm")
    "4111111111111111",     # Visa test number
    "5555555555554444",     # Mastercard test number
    "378282246310005",      # American Express test number
    "6011111111111117",     # Discover test number
    "7077001000000019", "7077001000000027", "7077001000000035",   # the seed fleet cards
    "0",
])
def test_luhn_valid(pan: str) -> None:
    assert luhn_ok(pan)


@pytest.mark.parametrize("pan", ["79927398710", "79927398711", "79927398712", "79927398714", "79927398719",
                                 "4111111111111112", "7077001000000018", "1"])
def test_luhn_invalid(pan: str) -> None:
    assert not luhn_ok(pan)


@pytest.mark.parametrize("pan", ["", "4111 1111 1111 1111", "411111111111111A", "-79927398713",
                                 "7992739871.3"])
def test_luhn_rejects_non_digits(pan: str) -> None:
    assert not luhn_ok(pan)


@settings(max_examples=200)
@given(body=st.from_regex(r"[0-9]{11,18}", fullmatch=True))
def test_exactly_one_check_digit_is_valid(body: str) -> None:
    valid = [d for d in "0123456789" if luhn_ok(body + d)]
    assert len(valid) == 1


@settings(max_examples=200)
@given(body=st.from_regex(r"[0-9]{11,18}", fullmatch=True), pos=st.integers(0, 18), delta=st.integers(1, 9))
def test_luhn_detects_every_single_digit_error(body: str, pos: int, delta: int) -> None:
    pan = next(body + d for d in "0123456789" if luhn_ok(body + d))
    pos %= len(pan)
    wrong = pan[:pos] + str((int(pan[pos]) + delta) % 10) + pan[pos + 1:]
    assert not luhn_ok(wrong)


def test_card_token_matches_rfc4231_hmac_sha256_vector() -> None:
    # RFC 4231 test case 2: HMAC-SHA-256, key "Jefe", data "what do ya want for nothing?"
    assert card_token(b"Jefe", "what do ya want for nothing?") == "5bdcc146bf60754e6a042426089575c7"


def test_card_token_is_keyed_and_stable() -> None:
    key, other = b"k" * 32, b"j" * 32
    t = card_token(key, "7077001000000019")
    assert t == card_token(key, "7077001000000019")
    assert len(t) == 32 and all(c in "0123456789abcdef" for c in t)
    assert t != card_token(other, "7077001000000019")
    assert t != card_token(key, "7077001000000027")
    assert t == hmac.new(key, b"7077001000000019", hashlib.sha256).hexdigest()[:32]
    assert "7077001000000019" not in t


@settings(max_examples=100)
@given(key=st.binary(min_size=16, max_size=32), a=st.from_regex(r"[0-9]{16}", fullmatch=True),
       b=st.from_regex(r"[0-9]{16}", fullmatch=True))
def test_card_token_distinguishes_cards(key: bytes, a: str, b: str) -> None:
    assert (card_token(key, a) == card_token(key, b)) == (a == b)
