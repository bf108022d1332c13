"""forecourt drivers gpio package."""
