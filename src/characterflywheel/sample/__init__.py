"""sample stages."""
