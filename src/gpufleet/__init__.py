"""gpufleet: tag millions of images on a fleet of workers that scales from zero."""

__version__ = "0.1.0"
