"""Evaluation: metrics (and later classical codecs, BD-rate and reports)."""
