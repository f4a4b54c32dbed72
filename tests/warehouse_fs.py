"""The filesystem and root path of a warehouse URI, for the reader scripts: pyarrow's S3
filesystem for s3:// (AWS_ENDPOINT_URL, keys and region from the environment), the local
filesystem for file://."""
import os

import pyarrow.fs as pafs


def open_warehouse(uri):
    uri = uri.rstrip("/")
    if uri.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5055")
        fs = pafs.S3FileSystem(endpoint_override=endpoint.split("://", 1)[1],
                               scheme=endpoint.split("://", 1)[0],
                               access_key=os.environ.get("AWS_ACCESS_KEY_ID", "flashfit"),
                               secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "flashfit-secret"),
                               region=os.environ.get("AWS_REGION", "us-east-1"))
        return fs, uri[len("s3://"):]
    return pafs.LocalFileSystem(), uri[len("file://"):]
