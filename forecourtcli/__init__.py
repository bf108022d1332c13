"""The `forecourt` command line: dispatches to the terminal, the registry, the simulator and the tools.

It sits on top of every other package; none of them imports it.
"""

from forecourtcli.main import main

__all__ = ["main"]
