"""Bank-card acquirer conversation of the fuel terminal: ISO 8583:1987 spec, messages, store-and-forward."""

__all__: list[str] = []
