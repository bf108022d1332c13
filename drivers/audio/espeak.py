"""Spoken prompts with espeak-ng (Debian package espeak-ng), played by aplay (alsa-utils) on an ALSA device.

espeak://                                   the default ALSA device
espeak://?device=plughw:CARD=Headphones     a Pi's headphone jack (`aplay -L` lists the names)
espeak://?rate=150                          words per minute (espeak-ng -s; its default is 175)

One worker thread plays a queue of utterances; say() only queues, so the caller never waits for audio,
and a new screen interrupts the one still being read (the processes are terminated). The text goes to
espeak-ng on stdin, never on its command line.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
from pathlib import Path

from contracts.errors import ConfigError
from drivers.url import DeviceUrl
from ui.speech import voice

__all__ = ["EspeakSpeaker", "espeak_argv", "open_espeak", "render_wav"]

log = logging.getLogger(__name__)

PROGRAM, PLAYER = "espeak-ng", "aplay"


def espeak_argv(language: str, rate: int, *, wav: str | None = None) -> list[str]:
    """espeak-ng reading UTF-8 text (-b 1) from stdin in the language's voice; WAV to stdout, or to a file.
    Options as `espeak-ng --help` (1.51) lists them."""
    out = ["-w", wav] if wav is not None else ["--stdout"]
    return [PROGRAM, "-v", voice(language), "-s", str(rate), "-b", "1", *out, "--stdin"]


def render_wav(text: str, language: str, path: Path, *, rate: int = 160, timeout: float = 30.0) -> None:
    """Speak text into a WAV file (a bench check of the voice, and the tests)."""
    subprocess.run(espeak_argv(language, rate, wav=str(path)), input=text.encode(), check=True,
                   capture_output=True, timeout=timeout)


class EspeakSpeaker:
    def __init__(self, *, device: str = "default", rate: int = 160) -> None:
        self.device, self.rate = device, rate
        self._queue: queue.Queue[tuple[int, str, str] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._generation = 0           # say(interrupt=True) starts a new one; older utterances are dropped
        self._playing: list[subprocess.Popen[bytes]] = []
        self._idle = threading.Event()
        self._idle.set()
        self._warned = False
        self.completed = self.stopped = 0       # utterances played to the end / cut short (bench figures)
        self._worker = threading.Thread(target=self._run, name="espeak", daemon=True)
        self._worker.start()

    def say(self, text: str, language: str, *, interrupt: bool = True) -> None:
        with self._lock:
            if interrupt:
                self._generation += 1
                self._stop_playing()
            self._idle.clear()
            self._queue.put((self._generation, text, language))

    def wait_idle(self, timeout: float) -> bool:
        """True once everything queued has been played (for tests and the bench)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            self._stop_playing()
        self._queue.put(None)
        self._worker.join(timeout=5)

    # -- the worker -----------------------------------------------------------------------------------
    def _stop_playing(self) -> None:
        for proc in self._playing:
            if proc.poll() is None:
                proc.terminate()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            generation, text, language = item
            with self._lock:
                current = generation == self._generation
                started = self._start(text, language) if current else []
            codes = [proc.wait() for proc in started]
            with self._lock:
                if codes:
                    self.completed += codes == [0, 0]
                    self.stopped += codes != [0, 0]
                if self._queue.empty():
                    self._idle.set()

    def _start(self, text: str, language: str) -> list[subprocess.Popen[bytes]]:
        """espeak-ng | aplay -D device, both under the lock so an interrupt sees them."""
        try:
            speak = subprocess.Popen(espeak_argv(language, self.rate), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            play = subprocess.Popen([PLAYER, "-q", "-D", self.device], stdin=speak.stdout,
                                    stderr=subprocess.DEVNULL)
        except OSError as exc:
            if not self._warned:      # the panel keeps working without a voice; say what to install once
                log.warning("spoken prompts unavailable: install espeak-ng and alsa-utils",
                            extra={"error": exc.strerror})
                self._warned = True
            return []
        if speak.stdout is not None:
            speak.stdout.close()      # aplay owns the read end now
        try:
            if speak.stdin is not None:
                speak.stdin.write(text.encode())
                speak.stdin.close()
        except BrokenPipeError:
            pass
        self._playing = [speak, play]
        return self._playing


def open_espeak(url: DeviceUrl) -> EspeakSpeaker:
    rate = url.number("rate", 160)
    if not 80 <= rate <= 450:          # espeak-ng takes 80..450 words per minute
        raise ConfigError("espeak:// rate must be 80..450 words per minute", key=url.key)
    device = url.option("device", "default")
    if not device or any(c.isspace() for c in device):
        raise ConfigError("espeak:// device must be an ALSA device name (aplay -L)", key=url.key)
    return EspeakSpeaker(device=device, rate=int(rate))
