"""Deployment exports: ONNX graphs and entropy tables for the torch-free decoder (``edgecodec.lite``)."""
