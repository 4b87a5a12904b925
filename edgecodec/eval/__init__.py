"""Evaluation: metrics, classical codecs, rate-distortion sweeps, BD-rate and reports."""
