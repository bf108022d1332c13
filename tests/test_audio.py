"""drivers.audio: the espeak-ng backend run for real (Debian espeak-ng and alsa-utils, scripts/setup.sh),
rendering to WAV files and playing to ALSA's null device, and the memory:// backend."""

from __future__ import annotations

import logging
import subprocess
import time
import wave
from pathlib import Path

import pytest

from contracts.errors import ConfigError
from drivers.audio import espeak, open_speaker
from drivers.audio.espeak import EspeakSpeaker, render_wav
from drivers.audio.memory import MemorySpeaker
from ui.screens import LANGUAGES
from ui.speech import VOICES, phrase, utterance


def samples(path: Path) -> tuple[tuple[int, int, int, int], bytes]:
    """(channels, sample width, frame rate, frames) and the samples of a WAV file."""
    with wave.open(str(path)) as w:
        return (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()), w.readframes(-1)


def loudest(frames: bytes) -> int:
    return max(abs(int.from_bytes(frames[i:i + 2], "little", signed=True)) for i in range(0, len(frames), 2))


@pytest.mark.parametrize("language", sorted(VOICES))
def test_each_language_has_its_espeak_voice(language: str) -> None:
    listing = subprocess.run(["espeak-ng", f"--voices={language}"], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    names = {row.split()[1] for row in listing[1:]}          # Pty Language Age/Gender VoiceName File ...
    assert VOICES[language] in names


@pytest.mark.parametrize("language", sorted(VOICES))
def test_espeak_speaks_each_language_into_a_wav(tmp_path: Path, language: str) -> None:
    """Each voice reads its own phrases (a language without screen texts yet is spoken in English, as it
    is shown in English, so the voice is called by name here)."""
    path = tmp_path / f"{language}.wav"
    subprocess.run(["espeak-ng", "-v", VOICES[language], "-b", "1", "-w", str(path), "--stdin"],
                   input=phrase("on", language).encode(), check=True, capture_output=True, timeout=30)
    (channels, width, rate, count), frames = samples(path)
    assert (channels, width, rate) == (1, 2, 22050)              # espeak-ng's output: 16-bit mono 22 kHz
    assert count / rate > 1.0 and loudest(frames) > 1000           # over a second of real sound


@pytest.mark.parametrize("language", LANGUAGES)
def test_render_wav_speaks_a_screen_language(tmp_path: Path, language: str) -> None:
    render_wav(phrase("on", language), language, tmp_path / "on.wav")
    assert samples(tmp_path / "on.wav")[0][3] > 22050


def test_the_voice_follows_the_language(tmp_path: Path) -> None:
    text = "Willkommen"
    for lang in ("de", "en"):
        render_wav(text, lang, tmp_path / f"{lang}.wav")
    assert samples(tmp_path / "de.wav")[1] != samples(tmp_path / "en.wav")[1]
    render_wav(text, "DE", tmp_path / "upper.wav")                 # the card's 5F2D may be upper case
    assert samples(tmp_path / "upper.wav")[1] == samples(tmp_path / "de.wav")[1]


def test_say_never_blocks_and_plays_to_an_alsa_device() -> None:
    speaker = open_speaker("espeak://?device=null&rate=200")
    assert isinstance(speaker, EspeakSpeaker) and speaker.rate == 200
    text = utterance("select_pump", "en", pumps=[1, 2])
    try:
        speaker.say(text, "en")
        assert not speaker.wait_idle(0)          # say() came back with the speech still to play
        assert speaker.wait_idle(30)
        assert (speaker.completed, speaker.stopped) == (1, 0)
    finally:
        speaker.close()


def test_a_new_screen_interrupts_the_one_being_read() -> None:
    speaker = EspeakSpeaker(device="null")
    try:
        long = " ".join([utterance("choose_app", "fr", apps="1 VISA  2 MAESTRO")] * 20)
        speaker.say(long, "fr")
        time.sleep(0.05)
        speaker.say(utterance("authorizing", "fr"), "fr")
        assert speaker.wait_idle(30)
        assert (speaker.completed, speaker.stopped) == (1, 1)    # only the new screen was read to the end
    finally:
        speaker.close()


def test_without_espeak_the_panel_goes_on_and_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(espeak, "PROGRAM", "/nonexistent/espeak-ng")
    speaker = EspeakSpeaker(device="null")
    try:
        with caplog.at_level(logging.WARNING, logger="drivers.audio.espeak"):
            speaker.say("one", "en")
            speaker.say("two", "en")
            assert speaker.wait_idle(5)
        assert [r.getMessage() for r in caplog.records] == [
            "spoken prompts unavailable: install espeak-ng and alsa-utils"]
    finally:
        speaker.close()


@pytest.mark.parametrize("url", ["espeak://?rate=20", "espeak://?rate=fast", "espeak://?device=",
                                 "espeak://?device=a b", "speaker://"])
def test_bad_audio_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_speaker(url)
    assert err.value.context["key"] == "devices.audio"


def test_memory_speaker_records_what_was_said() -> None:
    speaker = open_speaker("memory://")
    assert isinstance(speaker, MemorySpeaker)
    speaker.say("Welcome.", "en")
    speaker.say("Willkommen.", "de", interrupt=False)
    assert speaker.said == [("Welcome.", "en"), ("Willkommen.", "de")] and speaker.interrupts == 1
