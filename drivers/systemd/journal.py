"""Log lines for journald: a `<N>` syslog priority before each line, which journald reads on a service's
stdout/stderr (sd-daemon(3); priorities 0 emerg .. 7 debug, syslog(3)). $JOURNAL_STREAM ("device:inode"
of the stream journald connected, systemd.exec(5)) tells whether stderr goes to the journal."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

__all__ = ["JournalFormatter", "prefix_priorities", "stderr_is_journal"]

# syslog priorities: 2 crit, 3 err, 4 warning, 6 info, 7 debug
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority(levelno: int) -> int:
    """
    >>> priority(logging.ERROR), priority(logging.INFO), priority(5)
    (3, 6, 7)
    """
    return next((p for level, p in PRIORITIES if levelno >= level), 7)


class JournalFormatter(logging.Formatter):
    """Wraps the handler's formatter: every line of a record (a traceback too) gets the record's priority."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        mark = f"<{priority(record.levelno)}>"
        return "\n".join(mark + line for line in self.inner.format(record).splitlines())


def stderr_is_journal(*, environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    env = os.environ if environ is None else environ
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def prefix_priorities(logger: logging.Logger | None = None, *,
                      environ: Mapping[str, str] | None = None) -> bool:
    """When stderr is journald's stream, give each handler of `logger` (the root) the priority prefix.
    Call after setup_logging; True when it did."""
    if not stderr_is_journal(environ=environ):
        return False
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not isinstance(handler.formatter, JournalFormatter):
            handler.setFormatter(JournalFormatter(handler.formatter or logging.Formatter()))
    return True
