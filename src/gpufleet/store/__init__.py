"""Object stores: where input photos and result JSON live."""

from gpufleet.store.base import Location, ObjectStore, open_location

__all__ = ["Location", "ObjectStore", "open_location"]
