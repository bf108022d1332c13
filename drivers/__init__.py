"""forecourt drivers package."""
