#!/usr/bin/env python3
"""Reads the LanceDB `garments` table with the Python `lancedb` package and prints JSON: row
count, vector sizes, and the nearest garment to the first row's image vector (itself).
Usage: check_lance.py <lancedb_uri>   (S3 settings from AWS_* variables)
"""
import json, os, sys

import lancedb

uri = sys.argv[1]
opts = {}
if uri.startswith("s3://"):
    opts = {"aws_endpoint": os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5055"),
            "allow_http": "true", "aws_region": os.environ.get("AWS_REGION", "us-east-1"),
            "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "flashfit"),
            "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "flashfit-secret"),
            "aws_virtual_hosted_style_request": "false"}
elif uri.startswith("file://"):
    uri = uri[len("file://"):]
db = lancedb.connect(uri, storage_options=opts)
t = db.open_table("garments")
rows = t.to_arrow().to_pylist()
first = rows[0]
hit = t.search(first["image_vector"], vector_column_name="image_vector").limit(1).to_list()[0]
print(json.dumps({
    "rows": t.count_rows(),
    "garments": sorted(r["garment_id"] for r in rows),
    "image_dim": len(first["image_vector"]),
    "text_dim": len(first["text_vector"]),
    "nearest_is_itself": hit["garment_id"] == first["garment_id"],
}))
