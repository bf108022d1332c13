"""One sale, whatever its card program: the machine (states as data), the journal, the settlement from
pump figures, the pump work and the runner that reads top to bottom (docs/architecture.md)."""
