"""firmware.config: typed TOML loading where every mistake is a ConfigError that names the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ConfigError
from contracts.pump import PumpState
from firmware.config import (
    PROFILE_ENV,
    BankSection,
    DevicesSection,
    MqttSection,
    TerminalConfig,
    TerminalSection,
    TimeoutsSection,
    load_config,
)

FULL = """
[terminal]
id = "T-0001"
station = "ST-001"
state_dir = "state"
language = "de"

[mqtt]
host = "10.0.0.2"
port = 8883
keepalive = 30

[devices]
card_reader = "memory://"
pump_line = "loop://"
pumps = [1, 2, 4]
printer = "memory://"
panel = "tcp://127.0.0.1:7001"
pin_key = "keys/pek.hex"

[timeouts]
auth = 5           # an integer where a float is expected is widened
pin_entry = 30.5
nozzle_lift = 60
filling = 600.0
sale_ack = 2.5
"""

MINIMAL = '[terminal]\nid = "T-0001"\nstation = "ST-001"\n'


def write(tmp_path: Path, text: str, name: str = "terminal.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_full_file_loads_with_types(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    assert cfg.terminal == TerminalSection(id="T-0001", station="ST-001", state_dir="state", language="de")
    assert cfg.mqtt == MqttSection(host="10.0.0.2", port=8883, keepalive=30)
    assert cfg.devices.pumps == (1, 2, 4)
    assert isinstance(cfg.devices.pumps, tuple)
    assert cfg.devices.card_reader == "memory://"
    assert cfg.devices.pin_key == "keys/pek.hex"
    assert cfg.timeouts == TimeoutsSection(auth=5.0, pin_entry=30.5, nozzle_lift=60.0, filling=600.0,
                                           sale_ack=2.5)
    assert type(cfg.timeouts.auth) is float and type(cfg.timeouts.nozzle_lift) is float
    assert cfg.source == str((tmp_path / "terminal.toml").resolve())


def test_minimal_file_takes_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.terminal == TerminalSection(id="T-0001", station="ST-001")
    assert cfg.mqtt == MqttSection()
    assert cfg.devices == DevicesSection()
    assert cfg.timeouts == TimeoutsSection()
    assert cfg.mqtt.port == 1883 and cfg.devices.pumps == (1,)


def test_profile_picks_device_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    path = write(tmp_path, MINIMAL)
    assert load_config(path).devices == DevicesSection() == load_config(path, profile="pi").devices
    monkeypatch.setenv(PROFILE_ENV, "sim")
    sim = load_config(path).devices
    assert (sim.pump_line, sim.card_reader, sim.printer) == ("sim://", "memory://", "memory://")
    assert sim.panel == DevicesSection().panel                      # no simulated panel in-process
    assert load_config(path, profile="pi").devices == DevicesSection()   # the argument wins (--profile)
    bench = write(tmp_path, MINIMAL + '[devices]\npump_line = "/dev/ttyUSB0"\n', "bench.toml")
    assert load_config(bench).devices.pump_line == "/dev/ttyUSB0"   # the file wins over the profile
    assert load_config(bench).devices.card_reader == "memory://"


def test_unknown_profile_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROFILE_ENV, "raspberry")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL))
    assert err.value.context["key"] == PROFILE_ENV and "sim" in str(err.value)


def test_sim_profile_devices_open_by_url(tmp_path: Path) -> None:
    from drivers.devices import open_device

    devices = load_config(write(tmp_path, MINIMAL), profile="sim").devices
    assert open_device("card_reader", devices.card_reader) is not None
    assert open_device("printer", devices.printer).output == b""
    with open_device("pump_line", devices.pump_line, pumps=devices.pumps) as pumps:
        assert pumps.wait_status(1, lambda s: s.state is not PumpState.OFFLINE, 5).pump == 1


def test_state_dir_is_resolved_relative_to_the_file_not_the_cwd(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(write(tmp_path / "etc",
                            MINIMAL.replace("[terminal]\n", '[terminal]\nstate_dir = "../var/state"\n')))
    assert cfg.state_dir == (tmp_path / "var" / "state").resolve()
    default = load_config(write(tmp_path / "etc", MINIMAL, "other.toml"))
    assert default.state_dir == (tmp_path / "etc").resolve()


def test_state_dir_absolute_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs"
    cfg = load_config(write(tmp_path,
                            MINIMAL.replace("[terminal]\n", f'[terminal]\nstate_dir = "{target}"\n')))
    assert cfg.state_dir == target.resolve()


def test_config_without_source_uses_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = TerminalConfig(terminal=TerminalSection(id="T", station="S", state_dir="st"))
    assert cfg.state_dir == (tmp_path / "st").resolve()


def test_typo_in_key_names_the_key(tmp_path: Path) -> None:
    text = MINIMAL + "[devices]\npumsp = [1, 2]\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "pumsp" in str(info.value)
    assert info.value.context["key"] == "devices.pumsp"
    assert "pumps" in str(info.value)       # the known keys are listed to help fix the typo


@pytest.mark.parametrize("section", ["terminal", "mqtt", "devices", "timeouts", "bank"])
def test_unknown_key_in_every_section(tmp_path: Path, section: str) -> None:
    text = MINIMAL if section == "terminal" else MINIMAL + f"[{section}]\n"
    text = text.replace(f"[{section}]\n", f"[{section}]\nbogus_key = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.context["key"] == f"{section}.bogus_key"
    assert "bogus_key" in str(info.value)


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL + "[printer]\nurl = 'x'\n"))
    assert info.value.context["key"] == "printer"
    assert "[printer]" in str(info.value)


def test_unknown_top_level_scalar_is_an_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, 'id = "T-0001"\n' + MINIMAL))
    assert info.value.context["key"] == "id"


@pytest.mark.parametrize(("section", "line", "key"), [
    ("mqtt", 'port = "1883"', "mqtt.port"),
    ("mqtt", "port = 1883.0", "mqtt.port"),
    ("mqtt", "port = true", "mqtt.port"),
    ("mqtt", "host = 127", "mqtt.host"),
    ("timeouts", 'auth = "10"', "timeouts.auth"),
    ("timeouts", "auth = true", "timeouts.auth"),
    ("devices", "pumps = 1", "devices.pumps"),
    ("devices", 'pumps = [1, "2"]', "devices.pumps"),
    ("devices", "pumps = [1, true]", "devices.pumps"),
    ("devices", "pumps = [1.0]", "devices.pumps"),
    ("devices", "printer = ['memory://']", "devices.printer"),
    ("terminal", "language = 1", "terminal.language"),
])
def test_wrong_type_names_the_key(tmp_path: Path, section: str, line: str, key: str) -> None:
    base = MINIMAL if section == "terminal" else MINIMAL + f"[{section}]\n"
    text = base.replace(f"[{section}]\n", f"[{section}]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.context["key"] == key
    assert key in str(info.value)


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, 'mqtt = "broker"\n' + MINIMAL))
    assert info.value.context["key"] == "mqtt"


def test_missing_terminal_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[mqtt]\nport = 1883\n"))
    assert info.value.context["key"] == "terminal"
    assert "[terminal]" in str(info.value)


def test_empty_file_lacks_terminal(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[terminal\]"):
        load_config(write(tmp_path, ""))


def test_missing_terminal_id_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[terminal]\nstation = "ST-001"\n'))
    assert info.value.context["key"] == "terminal"
    assert "missing id" in str(info.value)
    assert "station" not in str(info.value).split("missing", 1)[1]


def test_missing_both_required_terminal_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing id, station"):
        load_config(write(tmp_path, "[terminal]\n"))


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, '[terminal\nid = "T"\n')
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path)
    assert info.value.context["path"] == str(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(path)
    assert info.value.context["path"] == str(path)
    assert isinstance(info.value, ValueError)   # ConfigError mixes in ValueError


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        cfg.terminal.id = "other"  # type: ignore[misc]


_KEY = st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(key=_KEY, value=st.one_of(st.integers(-10, 10**6), st.text(alphabet="abc", max_size=5), st.booleans()))
def test_any_key_not_in_the_dataclass_is_rejected_by_name(tmp_path_factory: pytest.TempPathFactory,
                                                          key: str, value: object) -> None:
    mqtt_keys = {f.name for f in dataclasses.fields(MqttSection)}       # what [mqtt] takes, no more
    toml_value = ("true" if value else "false") if isinstance(value, bool) else (
        f'"{value}"' if isinstance(value, str) else str(value))
    path = tmp_path_factory.mktemp("cfg") / "t.toml"
    path.write_text(MINIMAL + f"[mqtt]\n{key} = {toml_value}\n")
    if key not in mqtt_keys:               # another section's key, or none: refused by name
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert info.value.context["key"] == f"mqtt.{key}"
        assert key in str(info.value)
    else:
        try:
            cfg = load_config(path)
        except ConfigError as exc:          # a value of the wrong type or out of range
            assert exc.context["key"] == f"mqtt.{key}"
        else:
            assert getattr(cfg.mqtt, key) == value


@settings(max_examples=80, deadline=None)
@given(text=st.text(max_size=80))
def test_arbitrary_file_text_gives_config_or_config_error(tmp_path_factory: pytest.TempPathFactory,
                                                          text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "t.toml"
    path.write_text(text, encoding="utf-8")
    try:
        cfg = load_config(path)
    except ConfigError:
        return
    assert isinstance(cfg, TerminalConfig)


BANK = """
[bank]
acquirer = "tcp://10.0.0.9:5000"
emv_config = "keys/emv.toml"
dukpt = "keys/dukpt.toml"
magstripe = "tcp://127.0.0.1:7002"
merchant_id = "MERCHANT0000042"
name_location = "Forecourt 7 Ring Road"
currency = "826"
preauth_cents = 20000
response_timeout = 8        # widened to float
"""


def test_bank_section_defaults_when_absent(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.bank == BankSection()
    assert cfg.bank.acquirer == ""                  # bank cards are off
    assert (cfg.bank.currency, cfg.bank.preauth_cents, cfg.bank.response_timeout) == ("978", 15000, 15.0)
    assert (cfg.bank.emv_config, cfg.bank.dukpt, cfg.bank.magstripe) == ("emv.toml", "dukpt.toml", "")


def test_empty_bank_section_takes_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL + "[bank]\n")).bank == BankSection()


def test_bank_section_values_are_read(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + BANK))
    assert cfg.bank == BankSection(acquirer="tcp://10.0.0.9:5000", emv_config="keys/emv.toml",
                                   dukpt="keys/dukpt.toml", magstripe="tcp://127.0.0.1:7002",
                                   merchant_id="MERCHANT0000042", name_location="Forecourt 7 Ring Road",
                                   currency="826", preauth_cents=20000, response_timeout=8.0)
    assert type(cfg.bank.response_timeout) is float
    assert cfg.mqtt == MqttSection()                # other sections keep their defaults


def test_unknown_bank_key_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL + "[bank]\npreauth = 15000\n"))
    assert info.value.context["key"] == "bank.preauth"
    assert "preauth_cents" in str(info.value)       # the known keys help fix the typo


@pytest.mark.parametrize(("line", "key"), [
    ('acquirer = "10.0.0.9:5000"', "bank.acquirer"),
    ('acquirer = "http://10.0.0.9:5000"', "bank.acquirer"),
    ("preauth_cents = 0", "bank.preauth_cents"),
    ("preauth_cents = -100", "bank.preauth_cents"),
    ("preauth_cents = 100000000", "bank.preauth_cents"),
    ('currency = "EUR"', "bank.currency"),
    ('currency = "97"', "bank.currency"),
    ('currency = "9780"', "bank.currency"),
    ('preauth_cents = "15000"', "bank.preauth_cents"),
    ("preauth_cents = 150.0", "bank.preauth_cents"),
    ("currency = 978", "bank.currency"),
    ("response_timeout = true", "bank.response_timeout"),
])
def test_bad_bank_value_names_the_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL + f"[bank]\n{line}\n"))
    assert info.value.context["key"] == key
    assert key in str(info.value)


@pytest.mark.parametrize(("line", "attr", "value"), [
    ('acquirer = "tcp://acquirer.example:8583"', "acquirer", "tcp://acquirer.example:8583"),
    ("preauth_cents = 1", "preauth_cents", 1),
    ("preauth_cents = 99999999", "preauth_cents", 99_999_999),
    ('currency = "840"', "currency", "840"),
])
def test_bank_values_at_the_limits_are_accepted(tmp_path: Path, line: str, attr: str, value: object) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + f"[bank]\n{line}\n"))
    assert getattr(cfg.bank, attr) == value


def test_programs_default_and_choice(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL)).terminal.programs == ("fleet", "bank")
    text = MINIMAL.replace('station = "ST-001"', 'station = "ST-001"\nprograms = ["bank"]')
    assert load_config(write(tmp_path, text)).terminal.programs == ("bank",)


@pytest.mark.parametrize("value", ['"fleet"', "[1]", "[]", '["fleet", "fleet"]'])
def test_programs_must_be_distinct_names(tmp_path: Path, value: str) -> None:
    text = MINIMAL.replace('station = "ST-001"', f'station = "ST-001"\nprograms = {value}')
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.context["key"] == "terminal.programs"


def test_unknown_program_names_the_known_ones(tmp_path: Path) -> None:
    from firmware.programs import build_programs

    known = "known: purse, fleet, voucher, bank.*, loyalty"     # adjuncts (loyalty) after the card programs
    with pytest.raises(ConfigError, match=f"unknown card program 'house' .*{known}"):
        build_programs(("fleet", "house"), None)  # type: ignore[arg-type]


# -- hostile values are refused at load (issue 10) --------------------------------------------------------

def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "terminal.toml"
    path.write_bytes(MINIMAL.encode() + b'language = "\xe9"\n')          # Latin-1
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_directory_as_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


@pytest.mark.parametrize(("line", "key"), [
    ('state_dir = "st\\u0000ate"', "terminal.state_dir"),
    ('state_dir = "a\\nb"', "terminal.state_dir"),
    ('language = "e\\u007fn"', "terminal.language"),
])
def test_control_characters_in_text_are_refused(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL + line + "\n"))
    assert info.value.context["key"] == key


@pytest.mark.parametrize(("section", "line", "key"), [
    ("mqtt", "port = -1", "mqtt.port"),
    ("mqtt", "port = 0", "mqtt.port"),
    ("mqtt", "port = 99999", "mqtt.port"),
    ("mqtt", "keepalive = 0", "mqtt.keepalive"),
    ("mqtt", "keepalive = 70000", "mqtt.keepalive"),
    ("mqtt", 'host = ""', "mqtt.host"),
    ("mqtt", 'host = "broker host"', "mqtt.host"),
    ("timeouts", "auth = nan", "timeouts.auth"),
    ("timeouts", "auth = inf", "timeouts.auth"),
    ("timeouts", "filling = -inf", "timeouts.filling"),
    ("timeouts", "pin_entry = -1", "timeouts.pin_entry"),
    ("timeouts", "sale_ack = 0", "timeouts.sale_ack"),
    ("timeouts", "pump_offline = 1e9", "timeouts.pump_offline"),
    ("bank", "response_timeout = nan", "bank.response_timeout"),
    ("bank", 'acquirer = "tcp://"', "bank.acquirer"),
    ("bank", 'acquirer = "tcp://10.0.0.9"', "bank.acquirer"),
    ("bank", 'acquirer = "tcp://:5000"', "bank.acquirer"),
    ("bank", 'acquirer = "tcp://10.0.0.9:0"', "bank.acquirer"),
    ("bank", 'acquirer = "tcp://10.0.0.9:70000"', "bank.acquirer"),
    ("bank", 'acquirer = "http://10.0.0.9:5000"', "bank.acquirer"),
    ("bank", 'magstripe = "tcp://"', "bank.magstripe"),
    ("devices", 'printer = "tcp://"', "devices.printer"),
    ("devices", 'panel = "tcp://127.0.0.1:99999"', "devices.panel"),
    ("devices", 'printer = "TCP://printer"', "devices.printer"),
])
def test_out_of_range_values_and_bad_urls_are_refused(tmp_path: Path, section: str, line: str,
                                                     key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL + f"[{section}]\n{line}\n"), profile="sim")
    assert info.value.context["key"] == key


def test_good_urls_and_limits_load(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + "[mqtt]\nport = 65535\nkeepalive = 1\n"
                            "[timeouts]\nauth = 0.5\n"
                            '[devices]\npump_line = "/dev/ttyUSB0"\nprinter = "tcp://10.0.0.7:9100"\n'
                            '[bank]\nacquirer = "tcp://[::1]:5000"\nmagstripe = "none://"\n'), profile="sim")
    assert (cfg.mqtt.port, cfg.timeouts.auth, cfg.bank.acquirer) == (65535, 0.5, "tcp://[::1]:5000")


def test_helper_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    from firmware.config_files import read_toml

    path = tmp_path / "emv.toml"
    path.write_bytes(b"name = \"\xff\"\n")
    with pytest.raises(ConfigError, match="EMV parameters file .* is not UTF-8"):
        read_toml(path, "EMV parameters")


def test_pump_decimals_are_the_pumps_own_unless_pinned(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL)).devices.pump_decimals == ()
    text = MINIMAL + "\n[devices]\npump_decimals = [3, 0, 0]\n"
    assert load_config(write(tmp_path, text)).devices.pump_decimals == (3, 0, 0)


@pytest.mark.parametrize("value", ["[2, 2]", "[2, 2, 3, 1]", "[2, -1, 3]", "[2, 2, 9]", '"2,2,3"'])
def test_pump_decimals_must_be_three_places(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL + f"\n[devices]\npump_decimals = {value}\n"))
    assert err.value.context["key"] == "devices.pump_decimals"


# -- the acquirer's dialect and acquiring institution (issue 9) ------------------------------------------


def test_bank_dialect_and_acquirer_id_default_to_the_strict_1987_dialect(tmp_path: Path) -> None:
    from contracts.iso8583_spec import DIALECT
    from firmware.programs.bank.setup import acquirer_dialect

    bank = load_config(write(tmp_path, MINIMAL + "[bank]\n")).bank
    assert (bank.dialect, bank.acquirer_id) == ("afd-1987", "000000")
    assert acquirer_dialect(bank) is DIALECT and DIALECT.spec["52"]["max_len"] == 8


def test_bank_dialect_and_acquirer_id_are_read(tmp_path: Path) -> None:
    from contracts.iso8583_spec import DIALECT_AES_PIN
    from firmware.programs.bank.setup import acquirer_dialect, card_acceptor

    text = MINIMAL + '[bank]\ndialect = "afd-1987-aes-pin"\nacquirer_id = "12345678901"\n'
    bank = load_config(write(tmp_path, text)).bank
    assert acquirer_dialect(bank) is DIALECT_AES_PIN
    assert card_acceptor(bank, "AFD00001", bytes.fromhex("0276")).acquirer_id == "12345678901"


def test_unknown_bank_dialect_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="afd-1987, afd-1987-aes-pin") as info:
        load_config(write(tmp_path, MINIMAL + '[bank]\ndialect = "afd-1993"\n'))
    assert info.value.context["key"] == "bank.dialect"


@pytest.mark.parametrize("value", ["", "123456789012", "12345A", "-1", " 123", "١٢٣"])
def test_acquirer_id_must_be_1_to_11_digits(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"field 32, n\.\.11") as info:
        load_config(write(tmp_path, MINIMAL + f'[bank]\nacquirer_id = "{value}"\n'))
    assert info.value.context["key"] == "bank.acquirer_id"


def test_fleet_iins_default_to_the_test_cards_and_are_read(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL)).fleet.iins == ("707700",)
    cfg = load_config(write(tmp_path, MINIMAL + '[fleet]\niins = ["707700", "70088"]\n'))
    assert cfg.fleet.iins == ("707700", "70088")


@pytest.mark.parametrize("value", ['[""]', '["7077A"]', '["123456789012"]', '["١٢٣"]'])
def test_fleet_iins_must_be_digit_prefixes(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="fleet.iins") as info:
        load_config(write(tmp_path, MINIMAL + f"[fleet]\niins = {value}\n"))
    assert info.value.context["key"] == "fleet.iins"
