"""The cold-start floor: a bare Chalice app that creates one boto3 DynamoDB client at import (as
any DynamoDB-backed Lambda does) and answers one route. Nothing else."""
import boto3
from chalice import Chalice

app = Chalice(app_name="floor")
dynamodb = boto3.client("dynamodb", region_name="us-east-1")


@app.route("/.well-known/openid-configuration")
def openid_configuration():
    return {"issuer": "http://127.0.0.1:8000/", "jwks_uri": "http://127.0.0.1:8000/.well-known/jwks.json"}
