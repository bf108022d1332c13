"""forecourt provisioning package."""
