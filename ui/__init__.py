"""forecourt ui package."""
