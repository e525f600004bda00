"""reward stages."""
