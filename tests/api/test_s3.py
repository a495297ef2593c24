"""On S3, a download redirects to a URL presigned by the store (moto in server mode)."""

from __future__ import annotations

from pathlib import Path

import boto3
import httpx

from tests.api.conftest import MODEL, ApiServer, api_home, make_key, run_worker, tenant_input
from tests.conftest import write_files
from tests.servers import MotoServer


def test_download_of_an_s3_result_redirects_to_a_presigned_url(
        tmp_path: Path, aws_env: MotoServer) -> None:
    # Given results written to an S3 bucket by a real worker
    boto3.client("s3").create_bucket(Bucket="api-results")
    home = api_home(tmp_path / "home", GPUFLEET_API_LOCATIONS="t=s3://api-results/",
                    **aws_env.env)
    photos = tenant_input(home, "t") / "photos"
    write_files(photos, 2)
    _, key = make_key(home, "t", "submit,read")
    server = ApiServer(home.settings)
    try:
        with server.client(key) as http:
            job = http.post("/v1/jobs", json={
                "items": ["item-00001.bin"], "model": MODEL, "input": "photos/",
                "output": "s3://api-results/out/"}).json()["job"]
            run_worker(home)
            # When its download is asked for
            redirect = http.get(f"/v1/items/{job}/item-00001.bin/download")
        # Then it is a presigned S3 URL for the result object, which serves it
        assert redirect.status_code == 307
        url = redirect.headers["location"]
        assert url.startswith(aws_env.endpoint) and "Signature" in url
        assert f"/api-results/out/{job}/item-00001.bin.json" in url
        fetched = httpx.get(url)
        assert fetched.status_code == 200 and fetched.json()["key"] == "item-00001.bin"
    finally:
        server.stop()
        home.close()


def test_readiness_says_which_dependency_is_down(tmp_path: Path, aws_env: MotoServer) -> None:
    # Given an API whose output bucket does not exist
    home = api_home(tmp_path / "home", GPUFLEET_OUTPUT="s3://no-such-bucket/results/",
                    **aws_env.env)
    server = ApiServer(home.settings)
    try:
        # When readiness is asked for
        with server.client() as http:
            response = http.get("/readyz")
        # Then it is 503, naming the store, while the queue and index are fine, and
        # nothing of the deployment (bucket, endpoint) is shown
        assert response.status_code == 503
        doc = response.json()
        assert doc == {"status": "unavailable",
                       "checks": {"queue": "ok", "index": "ok", "store": "unavailable"}}
    finally:
        server.stop()
        home.close()
