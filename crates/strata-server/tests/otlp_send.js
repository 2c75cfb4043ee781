// Sends logs and metrics to Strata with the OpenTelemetry JS SDK and its OTLP HTTP exporters
// (OTLP/JSON), as a Node service would. Usage: node otlp_send.js <base url> <api key> <run id>
// Exits non-zero if an exporter reported a failure.
const { LoggerProvider, BatchLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-http');
const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { SeverityNumber } = require('@opentelemetry/api-logs');

const [base, key, run] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${key}` };
const failures = [];

// Keeps every failed export's error: the SDK only logs them.
function watch(exporter) {
  const exportBatch = exporter.export.bind(exporter);
  exporter.export = (items, done) =>
    exportBatch(items, (result) => {
      if (result.code !== 0) failures.push(String(result.error));
      done(result);
    });
  return exporter;
}

async function main() {
  const resource = resourceFromAttributes({ 'service.name': 'frontend', 'host.name': 'web-node' });
  const logs = new LoggerProvider({
    resource,
    processors: [new BatchLogRecordProcessor({ exporter: watch(new OTLPLogExporter({ url: `${base}/v1/logs`, headers })) })],
  });
  const logger = logs.getLogger('web.app', '2.0.0');
  for (let i = 0; i < 3; i++) {
    logger.emit({
      severityNumber: SeverityNumber.WARN,
      severityText: 'WARN',
      body: `cart ${i} abandoned ${run}`,
      attributes: { 'cart.items': i, 'user.vip': i === 1 },
    });
  }
  const exporter = watch(new OTLPMetricExporter({ url: `${base}/v1/metrics`, headers }));
  const meters = new MeterProvider({
    resource,
    readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60000 })],
  });
  const meter = meters.getMeter('web.meter');
  meter.createCounter('web.clicks').add(3, { run });
  const render = meter.createHistogram('web.render', { advice: { explicitBucketBoundaries: [10, 100] } });
  for (const v of [5, 50, 500]) render.record(v, { run });
  await logs.forceFlush();
  await meters.forceFlush();
  await logs.shutdown();
  await meters.shutdown();
  if (failures.length > 0) {
    console.error(failures.join('\n'));
    process.exit(1);
  }
  console.log('ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
