"""Sends hand-made OTLP gRPC requests with grpcio and prints the status code of each answer as
the client reads it. Usage: otlp_grpc_raw.py <host:port> <api key>"""
import json
import sys

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

address, key = sys.argv[1:3]
channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)])
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def status(method, body, api_key=key, compression=None):
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        call(body, metadata=[("authorization", f"Bearer {api_key}")], timeout=30, compression=compression)
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


record = LogRecord(severity_text="INFO")
record.body.string_value = "a line " * 20
valid = ExportLogsServiceRequest(
    resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record] * 5)])]
).SerializeToString()
print(
    json.dumps(
        {
            "valid": status(LOGS, valid),
            "empty": status(LOGS, b""),
            "garbage": status(LOGS, b"\xff" * 64),
            "truncated": status(LOGS, valid[: len(valid) // 2]),
            "bad_key": status(LOGS, valid, api_key="nope"),
            # 200 MiB of zeros gzip to about 200 KiB: refused by the decompressed size.
            "bomb": status(LOGS, b"\0" * (200 << 20), compression=grpc.Compression.Gzip),
            "traces": status(TRACES, b""),
        }
    )
)
