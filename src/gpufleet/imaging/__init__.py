"""Photos for the models: decoding within limits and a budget of decoded bytes in flight."""
