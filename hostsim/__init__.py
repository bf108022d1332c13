"""forecourt hostsim package."""
