"""DART codec vectors in MicroPython-compatible Python (run by run_vectors.mjs, also importable by CPython).

The same published vectors as tests/test_dart_codec.py (Wayne DART line protocol / application protocol
spec; CRC-16/ARC check value from the Rocksoft catalogue). No pytest, f-strings, typing or bytes.fromhex:
only what the MicroPython WebAssembly port is sure to have. run() returns (passed, failed) and prints
one line per failure plus a summary line "N passed, N failed".
"""

try:
    import dart  # MicroPython: run_vectors.mjs writes drivers/pump/dart.py to the filesystem root
except ImportError:
    from drivers.pump import dart


def unhex(text):
    """'50 20 FA' -> b'\\x50\\x20\\xfa' (bytes.fromhex is optional in MicroPython builds)."""
    text = text.replace(" ", "")
    return bytes([int(text[i:i + 2], 16) for i in range(0, len(text), 2)])


POLL_1 = unhex("50 20 FA")
EOT_1 = unhex("50 70 FA")
AUTHORIZE_TX7 = unhex("50 37 01 01 06 1E 2A 03 FA")
STATUS_REPLY_TX6 = unhex("50 36 01 01 02 03 04 00 21 80 11 0E 48 03 FA")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def raises(exc_type, fn, *args):
    try:
        fn(*args)
    except exc_type:
        return True
    return False


# -- vectors -------------------------------------------------------------------------------------------
def test_poll_vector():
    check(dart.encode_short(0x50, dart.POLL) == POLL_1, "encode POLL")
    f = dart.decode(POLL_1)
    check((f.addr, f.kind, f.txn, f.transactions, f.pump) == (0x50, dart.POLL, 0, [], 1), "decode POLL")


def test_eot_vector():
    check(dart.encode_short(dart.pump_address(1), dart.EOT, 0) == EOT_1, "encode EOT")
    check(dart.decode(EOT_1) == dart.Frame(0x50, dart.EOT, 0), "decode EOT")


def test_authorize_vector():
    raw = dart.encode_data(0x50, 7, [(dart.CD1, bytes([dart.CMD_AUTHORIZE]))])
    check(raw == AUTHORIZE_TX7, "encode AUTHORIZE")
    f = dart.decode(AUTHORIZE_TX7)
    check((f.kind, f.txn, f.transactions) == (dart.DATA, 7, [(0x01, b"\x06")]), "decode AUTHORIZE")


def test_status_reply_vector():
    f = dart.decode(STATUS_REPLY_TX6)
    check((f.addr, f.kind, f.txn) == (0x50, dart.DATA, 6), "status reply header")
    check(f.transactions == [(dart.DC1, b"\x02"), (dart.DC3, unhex("00218011"))], "status transactions")
    check(dart.bcd_decode(f.transactions[1][1][:3]) == 2180, "status price")
    nozzle = f.transactions[1][1][3]
    check(nozzle & dart.NOZZLE_OUT and nozzle & 0x0F == 1, "status nozzle")
    check(dart.encode_frame(f) == STATUS_REPLY_TX6, "re-encode status reply")


def test_crc16_arc():
    check(dart.crc16(b"123456789") == 0xBB3D, "CRC-16/ARC check value")
    check(dart.crc16(b"") == 0, "CRC of nothing")
    check(dart.crc16(unhex("5037010106")) == 0x2A1E, "CRC of the AUTHORIZE frame")
    check(dart.crc16(bytearray(b"123456789")) == 0xBB3D, "CRC over a bytearray")


def test_bad_crc_is_crc_error():
    bad = bytearray(AUTHORIZE_TX7)
    bad[5] ^= 0x01
    check(raises(dart.CrcError, dart.decode, bytes(bad)), "bad CRC raises CrcError")
    check(raises(dart.DartError, dart.decode, bytes(bad)), "CrcError is a DartError")
    check(raises(ValueError, dart.decode, bytes(bad)), "DartError is a ValueError")
    try:
        dart.decode(bytes(bad))
    except dart.CrcError as exc:
        check(exc.context["got"] != exc.context["want"], "CrcError carries its context")


# -- BCD -----------------------------------------------------------------------------------------------
BCD = [(0, 4, "00000000"), (1000, 4, "00001000"), (2180, 3, "002180"), (99999999, 4, "99999999"),
       (1234567890, 5, "1234567890"), (7, 1, "07")]


def test_bcd_vectors():
    for value, n, raw in BCD:
        check(dart.bcd_encode(value, n) == unhex(raw), "bcd_encode " + raw)
        check(dart.bcd_decode(unhex(raw)) == value, "bcd_decode " + raw)


def test_bcd_round_trips():
    for n in (1, 2, 3, 4, 5):
        top = 10 ** (2 * n)
        for value in (0, 1, 9, 10, 99, top // 7, top // 3, top - 1):
            if value < top:
                check(dart.bcd_decode(dart.bcd_encode(value, n)) == value, "round trip " + str(value))
    check(raises(dart.BcdError, dart.bcd_encode, 100, 1), "too big for BCD")
    check(raises(dart.BcdError, dart.bcd_encode, -1, 2), "negative BCD")
    check(raises(dart.BcdError, dart.bcd_decode, b"\x1a"), "non-decimal nibble")


# -- escaping ------------------------------------------------------------------------------------------
def test_escape_in_data():
    trans = [(dart.DC3, b"\xfa\x10\xfa")]
    raw = dart.encode_data(0x51, 2, trans)
    body = raw[2:-2]
    check(body.count(b"\x10\xfa") >= 2, "every SF in the data is escaped")
    check(raw.count(b"\xfa") == body.count(b"\xfa") + 1, "only the stop flag is bare")
    check(dart.decode(raw).transactions == trans, "escaped data decodes back")
    frames = dart.FrameSplitter().feed(raw + POLL_1)
    check(frames == [raw, POLL_1], "splitter keeps escaped SF inside the frame")


def test_escape_in_crc():
    # search for a payload whose CRC has 0xFA in a byte: the CRC must be escaped too
    found = 0
    for v in range(4096):
        trans = [(dart.CD5, bytes((v >> 8, v & 0xFF)))]
        crc = dart.crc16(bytes((0x50, 0x31, dart.CD5, 2, v >> 8, v & 0xFF)))
        if (crc & 0xFF) != 0xFA and (crc >> 8) != 0xFA:
            continue
        found += 1
        raw = dart.encode_data(0x50, 1, trans)
        check(b"\x10\xfa" in raw[-6:], "SF in the CRC is escaped")
        check(dart.decode(raw).transactions == trans, "frame with escaped CRC decodes back")
        if found >= 4:
            break
    check(found > 0, "a payload with 0xFA in its CRC exists")


def test_escape_unescape():
    for data in (b"", b"\xfa", b"\x10", b"\x10\xfa", b"\x01\xfa\xfa\x02"):
        check(dart.unescape(dart.escape(data)) == data, "escape round trip")
    check(raises(dart.FrameError, dart.unescape, b"\x01\xfa"), "bare SF is a FrameError")


def test_real_frames():
    # frames from real Wayne pumps and controllers (tests/vectors/dart/README.md): CRC and escaping agree
    big = unhex("50 3E 02 08 00 00 00 00 00 00 00 00 03 04 00 99 07 07 01 01 05 65 10 01 13 36 38 49 66"
                " 13 36 38 49 66 00 00 00 00 00 39 10 FA 03 FA")
    f = dart.decode(big)                      # its CRC high byte is FA, escaped by DLE
    check(f.txn == 0xE and [t for t, _ in f.transactions] == [2, 3, 1, 0x65], "real reply splits")
    check(dart.encode_frame(f) == big, "real reply encodes back byte for byte")
    cd5 = unhex("50 30 05 06 00 11 75 00 11 75 DA C7 03 FA")
    check(dart.decode(cd5).transactions == [(dart.CD5, unhex("00 11 75 00 11 75"))], "real CD5")
    check(dart.encode_data(0x51, 0xD, [(0x65, unhex("01 00 00 00 00 02 00 00 00 00 02 00 00 00 00 00"))])
          == unhex("51 3D 65 10 01 00 00 00 00 02 00 00 00 00 02 00 00 00 00 00 58 F8 03 FA"), "real DC101")


# -- runner --------------------------------------------------------------------------------------------
def run():
    passed = failed = 0
    for name in sorted(globals()):
        fn = globals()[name]
        if not name.startswith("test_") or not callable(fn):
            continue
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print("FAIL " + name + ": " + type(exc).__name__ + ": " + str(exc))
        else:
            passed += 1
    print(str(passed) + " passed, " + str(failed) + " failed")
    return passed, failed


if __name__ == "__main__":
    import sys
    sys.exit(1 if run()[1] else 0)
