"""The Lambda target answers ALB events in the ALB response shape."""
import copy
import importlib.util
import json

import pytest

from hybrid_alb import HANDLER_PATH

# The event an ALB sends to a Lambda target, as AWS documents it
# ("Using AWS Lambda with an Application Load Balancer").
ALB_EVENT = {
    "requestContext": {
        "elb": {
            "targetGroupArn": (
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
                "targetgroup/hybrid-alb-lambda/49e9d65c45c6791a"
            )
        }
    },
    "httpMethod": "GET",
    "path": "/lambda",
    "queryStringParameters": {"query": "1234ABCD"},
    "headers": {
        "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "accept-encoding": "gzip",
        "accept-language": "en-US,en;q=0.9",
        "connection": "keep-alive",
        "host": "hybrid-alb-Alb-123578498.us-east-1.elb.amazonaws.com",
        "upgrade-insecure-requests": "1",
        "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        "x-amzn-trace-id": "Root=1-5c536348-3d683b8b04734faae651f476",
        "x-forwarded-for": "72.12.164.125",
        "x-forwarded-port": "80",
        "x-forwarded-proto": "http",
    },
    "body": "",
    "isBase64Encoded": False,
}


class FakeContext:
    function_name = "hybrid-alb-fn"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"

    def get_remaining_time_in_millis(self):
        return 5000


@pytest.fixture(scope="module")
def handler():
    spec = importlib.util.spec_from_file_location("hybrid_alb_lambda_handler", HANDLER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def event(**changes):
    e = copy.deepcopy(ALB_EVENT)
    e.update(changes)
    return e


def assert_alb_shape(response, status, reason):
    # Lambda serialises the return value as JSON; it must survive that.
    response = json.loads(json.dumps(response))
    assert set(response) == {"statusCode", "statusDescription", "headers", "body", "isBase64Encoded"}
    assert response["statusCode"] == status
    assert response["statusDescription"] == "%d %s" % (status, reason)
    assert response["isBase64Encoded"] is False
    assert response["headers"]["Content-Type"] == "application/json"
    assert all(isinstance(v, str) for v in response["headers"].values())
    assert isinstance(response["body"], str)
    return json.loads(response["body"])


def test_get_lambda_answers_200(handler):
    body = assert_alb_shape(handler(event(), FakeContext()), 200, "OK")
    assert body == {"message": "hello from lambda", "path": "/lambda"}


def test_unknown_path_answers_404(handler):
    body = assert_alb_shape(handler(event(path="/nope"), FakeContext()), 404, "Not Found")
    assert body == {"error": "not found", "path": "/nope"}


def test_lambda_subpath_is_not_lambda(handler):
    assert handler(event(path="/lambda/x"), FakeContext())["statusCode"] == 404


def test_post_to_lambda_answers_405(handler):
    response = handler(event(httpMethod="POST", body="x=1"), FakeContext())
    body = assert_alb_shape(response, 405, "Method Not Allowed")
    assert response["headers"]["Allow"] == "GET, HEAD"
    assert body["method"] == "POST"


def test_multi_value_headers_event_gets_multi_value_headers(handler):
    e = event()
    del e["headers"], e["queryStringParameters"]
    e["multiValueHeaders"] = {k: [v] for k, v in ALB_EVENT["headers"].items()}
    e["multiValueQueryStringParameters"] = {"query": ["1234ABCD"]}
    response = handler(e, FakeContext())
    assert "headers" not in response
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    assert response["statusCode"] == 200
    assert response["statusDescription"] == "200 OK"
