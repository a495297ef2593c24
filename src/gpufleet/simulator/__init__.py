"""The offline simulator: traces of arriving work, replayed against gpufleet's policy and the
autoscalers it is compared with."""
