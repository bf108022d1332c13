"""forecourt registry package."""
