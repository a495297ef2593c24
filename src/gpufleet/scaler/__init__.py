"""Fleet scaling: policies and the providers that start and stop workers."""
