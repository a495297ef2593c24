"""Thumbnails of items' inputs, and the key's own description: what the dashboard uses."""

from __future__ import annotations

import io
import shutil

from PIL import Image

from tests.api.conftest import MODEL, World, run_worker, tenant_input
from tests.conftest import SAMPLE_DIR


def test_a_photo_has_a_thumbnail_through_a_signed_url_and_other_inputs_none(
        world: World) -> None:
    # Given a job of a with a photo and a non-photo, processed
    photos = tenant_input(world.home, "a") / "thumbs"
    photos.mkdir(parents=True, exist_ok=True)
    jpeg = sorted(SAMPLE_DIR.glob("*.JPEG"))[0]
    shutil.copy(jpeg, photos / "photo.jpg")
    (photos / "notes.bin").write_bytes(b"not a picture")
    job = world.submit("a", {"items": ["photo.jpg", "notes.bin"], "model": MODEL,
                             "input": "thumbs/"})["job"]
    run_worker(world.home)
    with world.client("a-read") as http:
        # When a asks for each thumbnail
        redirect = http.get(f"/v1/items/{job}/photo.jpg/thumbnail")
        photo = http.get(redirect.headers["location"])
        other = http.get(f"/v1/items/{job}/notes.bin/thumbnail", follow_redirects=True)
        download = http.get(f"/v1/items/{job}/photo.jpg/download").headers["location"]
    # Then the photo's is a small JPEG behind a signed URL, the other has none (204)
    assert redirect.status_code == 307 and "signature=" in redirect.headers["location"]
    assert photo.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(photo.content)).size) <= 128
    assert other.status_code == 204 and other.content == b""
    with world.client() as anonymous:
        # And the URL works without a key, while a result URL's signature opens no thumbnail
        assert anonymous.get(redirect.headers["location"]).status_code == 200
        forged = redirect.headers["location"].split("?")[0] + "?" + download.split("?")[1]
        assert anonymous.get(forged).status_code == 403
    # And b's key gets 404, as for any of a's objects
    with world.client("b") as http:
        assert http.get(f"/v1/items/{job}/photo.jpg/thumbnail").status_code == 404
        assert http.get(redirect.headers["location"]).status_code == 404


def test_a_key_describes_its_tenant_and_scopes(world: World) -> None:
    with world.client("b-read") as http:
        assert http.get("/v1/key").json() == {"id": world.key_ids["b-read"], "tenant": "b",
                                              "scopes": ["read"]}
    with world.client() as anonymous:
        assert anonymous.get("/v1/key").status_code == 401
