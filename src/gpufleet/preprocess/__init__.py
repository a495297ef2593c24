"""Preprocessing chains: steps a job names that run on each image before the model."""
