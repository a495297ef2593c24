"""Providers start and stop workers: local processes, cloud instances."""
