"""curate stages."""
