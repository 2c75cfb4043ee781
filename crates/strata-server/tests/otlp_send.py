"""Sends logs and metrics to Strata with the OpenTelemetry Python SDK and its OTLP exporters, as an
application would. Usage: otlp_send.py <grpc|grpc-gzip|http> <host:port> <api key> <run id>

Exits non-zero if an exporter reported a failure. With the key "bad-key", exports one batch of
logs directly and prints the exporter's result instead (the server must refuse it at once)."""
import logging
import sys

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

transport, address, key, run = sys.argv[1:5]

failures = []


class Failures(logging.Handler):
    """The exporters report failed exports through the `opentelemetry` loggers."""

    def emit(self, record):
        failures.append(record.getMessage())


logging.getLogger("opentelemetry").addHandler(Failures(level=logging.WARNING))

if transport.startswith("grpc"):
    from grpc import Compression
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    options = dict(endpoint=address, insecure=True, headers={"authorization": f"Bearer {key}"}, timeout=10)
    if transport == "grpc-gzip":
        options["compression"] = Compression.Gzip
    log_exporter, metric_exporter = OTLPLogExporter(**options), OTLPMetricExporter(**options)
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    headers = {"Authorization": f"Bearer {key}"}
    log_exporter = OTLPLogExporter(endpoint=f"http://{address}/v1/logs", headers=headers, timeout=10)
    metric_exporter = OTLPMetricExporter(endpoint=f"http://{address}/v1/metrics", headers=headers, timeout=10)

resource = Resource.create(
    {"service.name": "checkout", "host.name": f"web-{transport}", "deployment.environment": "test"}
)

if key == "bad-key":
    from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor

    answers = []

    class Probe:
        """Passes one batch to the exporter and keeps its answer to the server's refusal."""

        def export(self, batch):
            answers.append(log_exporter.export(batch))
            return LogRecordExportResult.SUCCESS

        def shutdown(self):
            pass

        def force_flush(self, timeout_millis=0):
            return True

    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(Probe()))
    probe = logging.getLogger("probe")
    probe.propagate = False
    probe.addHandler(LoggingHandler(logger_provider=provider))
    probe.error("refused %s", run)
    provider.shutdown()
    print(answers[0].name if answers else "NOT_SENT")
    sys.exit(0)

logs = LoggerProvider(resource=resource)
logs.add_log_record_processor(BatchLogRecordProcessor(log_exporter, schedule_delay_millis=200))
app = logging.getLogger("shop.payments")
app.setLevel(logging.INFO)
app.propagate = False
app.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logs))
for i in range(3):
    app.info("payment %d accepted %s", i, run, extra={"order": i, "amount": 9.5})
app.error("disk full on /var %s", run, extra={"disk": "sda"})

reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)
meters = MeterProvider(resource=resource, metric_readers=[reader])
meter = meters.get_meter("shop.meter", "1.2.3")
orders = meter.create_counter("shop.orders", unit="1")
orders.add(5, {"route": "/pay", "run": run})
orders.add(2, {"route": "/refund", "run": run})
latency = meter.create_histogram("shop.latency", unit="s", explicit_bucket_boundaries_advisory=[0.1, 0.5, 1.0])
for v in (0.05, 0.3, 0.3, 2.0):
    latency.record(v, {"run": run})
queue = meter.create_up_down_counter("shop.queue")
queue.add(7, {"run": run})
queue.add(-3, {"run": run})

logs.force_flush()
meters.force_flush()
logs.shutdown()
meters.shutdown()
if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
print("ok")
