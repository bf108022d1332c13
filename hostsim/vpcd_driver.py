"""The IFD handler the simulator's pcscd loads: vpcd wrapped so that pcscd notices a card in ~10 ms
instead of its fixed 400 ms presence poll (see vpcd_poll.c). Built with gcc into the run's state
directory; without gcc or the PC/SC headers the plain vpcd driver is used, only slower to see cards."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

__all__ = ["VPCD_DRIVER", "reader_driver"]

log = logging.getLogger(__name__)

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
_SOURCE = Path(__file__).with_name("vpcd_poll.c")
_HEADERS = Path("/usr/include/PCSC")


def reader_driver(state_dir: Path) -> Path:
    """The driver for pcscd's reader.conf: the polling wrapper when it builds, else vpcd itself."""
    gcc = shutil.which("gcc")
    if gcc is None or not (_HEADERS / "ifdhandler.h").exists():
        log.warning("gcc or libpcsclite-dev missing: pcscd sees cards every 400 ms")
        return VPCD_DRIVER
    target = state_dir / "libifdvpcd_poll.so"
    done = subprocess.run(
        [gcc, "-O2", "-shared", "-fPIC", f"-I{_HEADERS}", f'-DVPCD_LIBRARY="{VPCD_DRIVER}"',
         "-o", str(target), str(_SOURCE), "-ldl"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log.warning("vpcd polling wrapper did not build; pcscd sees cards every 400 ms",
                    extra={"error": done.stderr[-500:]})
        return VPCD_DRIVER
    return target
