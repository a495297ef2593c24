"""The HTTP API: jobs, results, tag search and signed downloads, for many tenants.

Nothing is imported here, so ``gpufleet keys`` and the CLI's API client do not
load FastAPI. The application factory is ``gpufleet.api.app.create_app``.
"""
