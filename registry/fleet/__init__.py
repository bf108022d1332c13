"""Fleet accounts: rules (pure), the ledger, usage per period, cards, authorization and settlement."""
