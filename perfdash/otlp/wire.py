"""OTLP/HTTP's encodings: a request body (protobuf or JSON, plain or gzip) into an
`ExportMetricsServiceRequest`, and the answers (`ExportMetricsServiceResponse`, or a
`google.rpc.Status` for an error) in the request's encoding."""

from __future__ import annotations

import zlib

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class WireError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def content_type(header: str) -> str:
    """PROTOBUF or JSON, or WireError 415."""
    kind = header.split(";")[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise WireError(f"Content-Type must be {PROTOBUF} or {JSON}, not {header or 'missing'!r}", 415)
    return kind


def inflate(body: bytes, encoding: str, max_body: int) -> bytes:
    """The body, gunzipped if so sent, at most `max_body` bytes either way (WireError 413)."""
    if len(body) > max_body:
        raise WireError(f"body is larger than {max_body} bytes", 413)
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise WireError(f"Content-Encoding {encoding!r} is not supported; use gzip", 415)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        # max_length bounds the memory a gzip bomb can take.
        out = inflater.decompress(body, max_body + 1)
    except zlib.error as exc:
        raise WireError(f"body is not valid gzip: {exc}") from None
    if len(out) > max_body or inflater.unconsumed_tail:
        raise WireError(f"decompressed body is larger than {max_body} bytes", 413)
    if not inflater.eof:
        raise WireError("body is not valid gzip: truncated stream")
    return out


def decode(body: bytes, kind: str) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    try:
        if kind == PROTOBUF:
            request.ParseFromString(body)
        else:
            # OTLP/JSON is protobuf's JSON mapping: lowerCamelCase names, 64-bit integers as
            # strings, enums as numbers; fields from newer versions of OTLP are skipped.
            json_format.Parse(body, request, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"body is not an ExportMetricsServiceRequest: {exc}") from None
    return request


def encode(message, kind: str) -> bytes:
    if kind == PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


def response(rejected: int = 0, message: str = "") -> ExportMetricsServiceResponse:
    out = ExportMetricsServiceResponse()
    if rejected or message:
        out.partial_success.rejected_data_points = rejected
        out.partial_success.error_message = message
    return out


def status(code: int, message: str) -> Status:
    return Status(code=code, message=message)
