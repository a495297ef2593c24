"""Workers: bootstrap a model once, then fetch ▶ decode ▶ batch ▶ infer ▶ write."""
