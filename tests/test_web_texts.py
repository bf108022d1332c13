"""The back office's texts: every key has English, Russian and Spanish with the same {placeholders}, and
every key a template or a route asks for by name is in a catalogue."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from registry.web.auth import LANGUAGES, ROLES
from registry.web.texts import MissingText, catalogue, negotiate, translator

WEB = Path(__file__).resolve().parent.parent / "registry" / "web"
ASKED = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z0-9_]*[a-z0-9])["']""")     # not a prefix ("core.error_")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_key_has_every_language_with_the_same_placeholders() -> None:
    texts = catalogue()
    assert len(texts) > 50
    for key, by_language in texts.items():
        assert set(by_language) == set(LANGUAGES), key
        assert all(by_language[lang].strip() for lang in LANGUAGES), key
        assert {lang: _fields(by_language[lang]) for lang in LANGUAGES} == \
            {lang: _fields(by_language["en"]) for lang in LANGUAGES}, key


def test_every_key_asked_for_by_name_is_in_a_catalogue() -> None:
    sources = [*WEB.rglob("*.html"), *WEB.rglob("*.py")]
    asked = {key for path in sources for key in ASKED.findall(path.read_text(encoding="utf-8"))}
    assert len(asked) > 40
    assert sorted(asked - set(catalogue())) == []


def test_keys_built_from_a_role_or_a_status_exist() -> None:
    for lang in LANGUAGES:
        for role in ROLES:
            assert translator(lang)(f"core.role_{role}")
        for status in (400, 401, 403, 404, 422):
            assert translator(lang)(f"core.error_{status}")


def test_a_missing_key_is_an_error_not_a_silent_fallback() -> None:
    with pytest.raises(MissingText):
        translator("ru")("core.no_such_text")


def test_russian_and_spanish_are_really_translated() -> None:
    assert translator("ru")("core.sign_in") == "Войти"
    assert translator("es")("core.sign_in") == "Iniciar sesión"
    assert translator("es")("core.welcome", name="Ana") == "Bienvenido, Ana"


def test_language_from_the_query_then_the_browser() -> None:
    assert negotiate("ru", "es-ES,es;q=0.9") == "ru"
    assert negotiate(None, "es-ES,es;q=0.9,en;q=0.5") == "es"
    assert negotiate("xx", "de-DE,ru;q=0.8") == "ru"
    assert negotiate(None, None) == "en"
