"""S3 store: objects in a bucket under a prefix (``s3://bucket/prefix``).

Adds to the contract:

- endpoint choice for S3-compatible services: the ``endpoint_url`` argument,
  else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, else AWS itself;
- one boto3 client shared by all threads, with botocore's "standard" retry
  mode (backs off on 5xx, throttling, timeouts, dropped connections);
- compare-and-swap as a conditional PutObject (``If-Match: <ETag>``, or
  ``If-None-Match: *`` for a new object) and "not modified" polls as a
  conditional GetObject (``If-None-Match`` → 304). Tags are ETags;
- every botocore failure translated into a one-line StoreError naming the
  bucket/key and the cause; one that may pass (a dropped or timed-out
  connection, a 5xx or SlowDown, a body that broke off while it was read)
  is a TransientStoreError, which ``RetryingStore`` retries. An endpoint
  that cannot be reached at all (refused, unknown, connect timeout) is not:
  botocore has retried it, and a wrong endpoint is better said at once.
  Bodies are read inside the translating ``try``. Credentials never appear
  in messages.

boto3 is imported here only, so ``import fogsync`` stays cheap.
"""

from __future__ import annotations

import http.client
import os
from typing import Iterator
from urllib.parse import urlparse

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from fogsync.errors import ConfigError, TransientStoreError
from fogsync.store.base import (
    ObjectInfo,
    ObjectNotFound,
    Store,
    StoreError,
    SwapConflict,
    Versioned,
)

__all__ = ["S3Store"]

_NOT_FOUND = ("NoSuchKey", "404", "NotFound")
_CONFLICT = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
_BAD_CREDENTIALS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken")
# botocore wraps what urllib3 raises while a body is read; the raw kinds are caught too, in case one slips by
_BotoError = (BotoCoreError, ClientError, http.client.HTTPException, urllib3.exceptions.HTTPError, ConnectionError)
_TRANSIENT = (
    BotoConnectionError,  # a connection lost part way: ConnectionClosedError, ReadTimeoutError, ...
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
    ReadTimeoutError,
    ConnectionClosedError,
    http.client.HTTPException,
    urllib3.exceptions.HTTPError,
    ConnectionError,
)
_TRANSIENT_CODES = ("SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestLimitExceeded", "TooManyRequests")


class S3Store(Store):
    """Objects under ``s3://bucket/prefix``; the key ``a/b`` is ``prefix/a/b``."""

    read_concurrency = 16  # each GET is a round trip
    pool_connections = 32  # botocore's max_pool_connections: room for every upload and read-ahead thread

    def __init__(
        self,
        url: str,
        endpoint_url: str | None = None,
        *,
        max_attempts: int = 8,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        session: boto3.session.Session | None = None,
    ) -> None:
        """``session`` is the boto3 session to make the client from (a fresh one when None):
        handlers on its ``events`` see every request, so a test can make a response go missing."""
        self.url = url
        self.bucket, self.prefix = _parse_url(url)
        endpoint_url = endpoint_url or _endpoint_from_env()
        config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=self.pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        try:
            session = session or boto3.session.Session()
            self._client = session.client("s3", endpoint_url=endpoint_url, config=config)
        except (BotoCoreError, ValueError) as exc:
            raise StoreError(f"cannot open {url}: {_one_line(exc)}") from exc

    @property
    def endpoint_url(self) -> str:
        """The endpoint actually in use (AWS's own when none was configured)."""
        return self._client.meta.endpoint_url

    def get(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
            return response["Body"].read()
        except _BotoError as exc:
            raise self._error(exc, "get", key) from exc

    def put(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._full(key), Body=bytes(data))
        except _BotoError as exc:
            raise self._error(exc, "put", key) from exc

    def exists(self, key: str) -> bool:
        """Whether the object is present (HEAD; a missing bucket also reads as absent)."""
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return False
            raise self._error(exc, "head", key) from exc
        except _BotoError as exc:
            raise self._error(exc, "head", key) from exc
        return True

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix))
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"][len(self.prefix):]
        except _BotoError as exc:
            raise self._error(exc, "list", prefix) from exc

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix))
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(item["Key"][len(self.prefix):], int(item["Size"]), item["LastModified"])
        except _BotoError as exc:
            raise self._error(exc, "list", prefix) from exc

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except _BotoError as exc:
            raise self._error(exc, "delete", key) from exc

    def get_versioned(self, key: str, unless_tag: str | None = None) -> Versioned | None:
        condition = {"IfNoneMatch": unless_tag} if unless_tag is not None else {}
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key), **condition)
            return Versioned(response["Body"].read(), response["ETag"])
        except ClientError as exc:
            if _status(exc) == 304:
                return None
            raise self._error(exc, "get", key) from exc
        except _BotoError as exc:
            raise self._error(exc, "get", key) from exc

    def put_if(self, key: str, data: bytes, expected_tag: str | None) -> str:
        """Conditional PutObject. A 412/409 (or 404 for a vanished object) is a SwapConflict."""
        data = bytes(data)
        condition = {"IfNoneMatch": "*"} if expected_tag is None else {"IfMatch": expected_tag}
        try:
            response = self._client.put_object(
                Bucket=self.bucket, Key=self._full(key), Body=data, **condition
            )
            return response["ETag"]
        except ClientError as exc:
            lost = _code(exc) in _CONFLICT or (expected_tag is not None and _code(exc) in _NOT_FOUND)
            if lost:
                return self._own_retried_write(key, data, exc)
            raise self._error(exc, "put", key) from exc
        except _BotoError as exc:
            raise self._error(exc, "put", key) from exc

    def close(self) -> None:
        self._client.close()

    def _own_retried_write(self, key: str, data: bytes, exc: ClientError) -> str:
        """Tag of our own write if a retry lost only to its first attempt, else SwapConflict.

        When a swap's response is lost (timeout, 5xx) the client retries; if
        the first attempt had landed, the retry fails its precondition. The
        head's bytes are unique (fresh nonce), so equal bytes mean we won.
        """
        if exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0):
            try:
                current = self.get_versioned(key)
            except ObjectNotFound:
                current = None
            if current is not None and current.data == data:
                return current.tag
        raise SwapConflict(f"{self._where(key)} changed since it was read") from exc

    def _full(self, key: str) -> str:
        return self.prefix + key

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{self._full(key or '')}"

    def _error(self, exc: Exception, op: str, key: str) -> StoreError:
        """Translate a botocore exception into a one-line StoreError."""
        where = self._where(key)
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
            # botocore has retried it already; a wrong or down endpoint is said at once, not after minutes
            return StoreError(f"cannot reach S3 endpoint {self.endpoint_url}: {_one_line(exc)}")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StoreError(
                f"no usable AWS credentials for {where} (set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): {_one_line(exc)}"
            )
        if not isinstance(exc, ClientError):
            kind = TransientStoreError if isinstance(exc, _TRANSIENT) else StoreError
            return kind(f"S3 {op} {where} failed: {type(exc).__name__}: {_one_line(exc)}")
        return self._client_error(exc, op, key, where)

    def _client_error(self, exc: ClientError, op: str, key: str, where: str) -> StoreError:
        code = _code(exc)
        if code == "NoSuchBucket":
            return StoreError(f"no such bucket: {self.bucket} (at {self.endpoint_url})")
        if code in _NOT_FOUND and op == "get":
            return ObjectNotFound(f"{key}: not found in {self.url}")
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            return StoreError(f"access denied: S3 {op} {where}")
        if code in _BAD_CREDENTIALS:
            return StoreError(f"S3 rejected the credentials ({code}) for {where}")
        message = exc.response.get("Error", {}).get("Message") or ""
        transient = code in _TRANSIENT_CODES or (_status(exc) or 0) >= 500
        kind = TransientStoreError if transient else StoreError
        return kind(f"S3 {op} {where} failed: {code} {_one_line(message)}".rstrip())


def _parse_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(f"not an S3 URL (s3://bucket/prefix): {url}")
    prefix = parsed.path.strip("/")
    return parsed.netloc, prefix + "/" if prefix else ""


def _endpoint_from_env() -> str | None:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            return os.environ[name]
    return None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _one_line(value: object) -> str:
    return " ".join(str(value).split())
