"""report stages."""
