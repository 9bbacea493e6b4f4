"""Prediction and evaluation outputs: labelled frames (CSVs, metrics, plots)."""
