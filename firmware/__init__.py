"""Terminal core: sale flow, card kernels, journal, sync and configuration."""
