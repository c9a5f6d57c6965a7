"""One cold start, in a fresh interpreter: import the app and answer a first
``GET /.well-known/openid-configuration`` through the Lambda handler (``app(event, context)``
with an API Gateway REST proxy event). ``argv[1]``: ``broker`` (app.py) or ``floor``
(bench/floor_app.py). Prints one JSON line with the timings."""
import time

T0 = time.perf_counter()  # first statement: everything after interpreter start-up is measured

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Context:
    function_name = "identity-broker-dev"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:identity-broker-dev"

    def get_remaining_time_in_millis(self):
        return 28_000


def event(path):
    headers = {"Host": "127.0.0.1:8000", "Accept": "application/json"}
    return {
        "resource": path, "path": path, "httpMethod": "GET", "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": path, "httpMethod": "GET", "path": "/api" + path,
                           "stage": "api", "requestId": "bench",
                           "identity": {"sourceIp": "127.0.0.1"}},
        "body": None, "isBase64Encoded": False,
    }


def main():
    mode = sys.argv[1]
    if mode == "broker":
        sys.path.insert(0, ROOT)
        from app import app
    else:
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        from floor_app import app
    t_import = time.perf_counter()
    response = app(event("/.well-known/openid-configuration"), Context())
    t_end = time.perf_counter()
    spawned = int(os.environ.get("BENCH_SPAWN_NS", "0"))
    print(json.dumps({
        "mode": mode,
        "status": response["statusCode"],
        "import_ms": (t_import - T0) * 1000,
        "first_request_ms": (t_end - t_import) * 1000,
        "total_ms": (t_end - T0) * 1000,
        "since_spawn_ms": (time.time_ns() - spawned) / 1e6 if spawned else None,
        "modules": len(sys.modules),
    }))


main()
