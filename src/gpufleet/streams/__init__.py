"""Streaming sources (``gpufleet stream``): object keys and S3 events read from a stream
become rolling jobs, one per window, acknowledged only once enqueued."""
