"""Offline evaluation: deterministic instruction checks (``instructions``) and the other evaluators."""
