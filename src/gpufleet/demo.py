"""Sample photos for the demo, from scikit-image's bundled data (no download)."""

from __future__ import annotations

import shutil
from importlib.util import find_spec
from pathlib import Path

from gpufleet.errors import ConfigError

# scikit-image file → the name the demo gives it
PHOTOS = {
    "chelsea.png": "cat.png",
    "coffee.png": "coffee.png",
    "rocket.jpg": "rocket.jpg",
    "motorcycle_left.png": "motorcycle.png",
    "astronaut.png": "astronaut.png",
    "hubble_deep_field.jpg": "hubble.jpg",
    "camera.png": "cameraman.png",
    "coins.png": "coins.png",
    "retina.jpg": "retina.jpg",
    "moon.png": "moon.png",
}


def write_photos(folder: Path) -> Path:
    spec = find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the demo photos come with scikit-image: "
                          "pip install 'gpufleet[demo]'")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for source, name in PHOTOS.items():
        if (data / source).is_file():
            shutil.copyfile(data / source, folder / name)
    return folder
