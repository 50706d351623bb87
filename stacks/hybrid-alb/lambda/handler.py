"""Lambda target of the hybrid-alb load balancer.

The ALB invokes this function for requests matching the listener rule
`/lambda`. The response uses the shape the ALB expects from a Lambda target:
statusCode, statusDescription, headers (or multiValueHeaders when the target
group has multi-value headers enabled), body and isBase64Encoded.
"""
import json

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}


def _response(event, status, payload, extra_headers=None):
    headers = {"Content-Type": "application/json"}
    headers.update(extra_headers or {})
    response = {
        "statusCode": status,
        "statusDescription": "%d %s" % (status, _REASONS[status]),
        "isBase64Encoded": False,
        "body": json.dumps(payload, sort_keys=True),
    }
    # With multi-value headers enabled on the target group, the ALB sends
    # multiValueHeaders and ignores a plain `headers` map in the response.
    if "multiValueHeaders" in event:
        response["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    else:
        response["headers"] = headers
    return response


def handler(event, context):
    method = event.get("httpMethod", "GET")
    path = event.get("path") or "/"
    if path != "/lambda":
        return _response(event, 404, {"error": "not found", "path": path})
    if method not in ("GET", "HEAD"):
        return _response(
            event, 405, {"error": "method not allowed", "method": method},
            {"Allow": "GET, HEAD"},
        )
    return _response(event, 200, {"message": "hello from lambda", "path": path})
