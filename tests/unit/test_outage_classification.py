"""What is an outage (stop the batch, keep the attempts) and what is an item fault."""

import botocore.exceptions as boto
import httpx
import psycopg
import pytest
import requests

from unde_dagster.outages import ServiceOutage, outage_of


def client_error(code: str, status: int) -> boto.ClientError:
    response = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return boto.ClientError(response, "PutObject")  # type: ignore[arg-type]


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response.request = requests.Request("GET", "https://api.ximilar.com/x").prepare()
    return requests.HTTPError(f"{status}", response=response, request=response.request)


def httpx_status(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://api.example.com/v1")
    return httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(status, request=request)
    )


@pytest.mark.parametrize(
    ("exc", "service"),
    [
        (boto.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "object store"),
        (boto.ConnectionClosedError(endpoint_url="http://s3"), "object store"),
        (boto.ConnectTimeoutError(endpoint_url="http://s3"), "object store"),
        (boto.ReadTimeoutError(endpoint_url="http://s3"), "object store"),
        (boto.NoCredentialsError(), "object store"),
        (client_error("InternalError", 500), "object store"),
        (client_error("Whatever", 503), "object store"),
        (client_error("InvalidAccessKeyId", 403), "object store"),
        (client_error("SignatureDoesNotMatch", 403), "object store"),
        (client_error("AccessDenied", 403), "object store"),
        (psycopg.OperationalError("server closed the connection"), "Staging DB"),
        (psycopg.InterfaceError("the connection is closed"), "Staging DB"),
        (requests.ConnectionError("refused"), "HTTP API"),
        (http_error(502), "HTTP API api.ximilar.com"),
        (http_error(401), "HTTP API api.ximilar.com"),
        (http_error(403), "HTTP API api.ximilar.com"),
        (httpx_status(503), "HTTP API api.example.com"),
        (
            httpx.ConnectError("refused", request=httpx.Request("GET", "https://h.io/")),
            "HTTP API h.io",
        ),
    ],
)
def test_outages_name_their_service(exc: BaseException, service: str) -> None:
    outage = outage_of(exc)
    assert outage is not None and outage.service == service
    assert outage.cause is exc and str(outage).startswith(f"{service} unavailable:")


@pytest.mark.parametrize(
    "exc",
    [
        client_error("NoSuchKey", 404),
        client_error("EntityTooLarge", 400),
        psycopg.errors.UniqueViolation("duplicate key"),
        psycopg.DataError("bad value"),
        http_error(404),
        http_error(429),
        httpx_status(400),
        ValueError("this SKU's bytes"),
        KeyError("image_urls"),
    ],
)
def test_item_faults_are_not_outages(exc: BaseException) -> None:
    assert outage_of(exc) is None


def test_an_outage_is_found_through_raise_from_and_kept_as_is() -> None:
    try:
        try:
            raise psycopg.OperationalError("terminating connection")
        except psycopg.OperationalError as cause:
            raise RuntimeError("recording SKU 1 failed") from cause
    except RuntimeError as wrapped:
        found = outage_of(wrapped, db="Production DB")
    assert found is not None and found.service == "Production DB"
    outage = ServiceOutage("object store", OSError("down"), outcome={"done": 3})
    assert outage_of(outage) is outage and outage.outcome == {"done": 3}


def test_an_error_raised_while_handling_an_outage_is_not_one() -> None:
    """Only `raise ... from` links a cause: a bug in an except block stays a bug."""
    try:
        try:
            raise psycopg.OperationalError("down")
        except psycopg.OperationalError:
            raise ValueError("bug")  # noqa: B904
    except ValueError as exc:
        assert outage_of(exc) is None
