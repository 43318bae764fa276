// Sends N seed-format events with the official posthog-node client, in batches of BATCH (its
// default is 100), gzip as it does by default, and reports what it sent and how long the
// host took to accept it all, as one JSON line:
// {"events", "requests", "seconds", "max_body", "max_raw", "mean_raw", "encodings", "failed"}
// (body sizes in bytes as sent, raw sizes decompressed).
// Usage: node throughput.mjs HOST TOKEN N [BATCH]
import { gunzipSync } from 'node:zlib';
import { PostHog } from 'posthog-node';

const [host, token, n, batchArg] = process.argv.slice(2);
const batch = Number(batchArg || 100);
const sizes = [];
const encodings = new Set();
const recordingFetch = async (url, options) => {
  const body = options && options.body;
  let bytes;
  if (typeof body === 'string') {
    bytes = Buffer.from(body);
  } else if (body instanceof Blob) {
    bytes = Buffer.from(await body.arrayBuffer());
  } else if (body) {
    bytes = Buffer.from(body);
  }
  if (bytes) {
    const headers = new Headers(options.headers || {});
    const encoding = headers.get('content-encoding') || 'identity';
    encodings.add(encoding);
    const raw = encoding === 'gzip' ? gunzipSync(bytes).length : bytes.length;
    sizes.push([bytes.length, raw]);
  }
  return fetch(url, options);
};
const client = new PostHog(token, {
  host,
  flushAt: batch,
  maxBatchSize: batch,
  maxQueueSize: 100000,
  flushInterval: 60000,
  fetchRetryCount: 3,
  fetchRetryDelay: 1000,
  requestTimeout: 30000,
  fetch: recordingFetch,
});
let failed = 0;
client.on('error', () => {
  failed += 1;
});
const started = process.hrtime.bigint();
const total = Number(n);
for (let i = 0; i < total; i++) {
  const k = i % 100;
  if (k < 90) {
    client.capture({
      distinctId: `user-${i % 250}`,
      event: 'segmentation_api_success',
      properties: { duration_ms: 50 + (i % 1950), customer_count: 100 + (i % 50), segment_count: 4 },
    });
  } else if (k < 96) {
    client.capture({
      distinctId: `user-${i % 250}`,
      event: 'segmentation_dashboard_viewed',
      properties: { data_mode: k % 2 ? 'live' : 'demo', customer_count: 120, segment_count: 4 },
    });
  } else if (k < 99) {
    client.capture({
      distinctId: `user-${i % 250}`,
      event: 'segmentation_memory_snapshot',
      properties: { used_js_heap_mb: 80 + (i % 40) },
    });
  } else {
    client.capture({
      distinctId: `user-${i % 250}`,
      event: 'segmentation_error_occurred',
      properties: { error_message: `Segmentation failed for portfolio ${i % 300}` },
    });
  }
  // Keep the queue bounded, as a steady producer would.
  if ((i + 1) % 10000 === 0) {
    await client.flush();
  }
}
await client.shutdown(600000);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const raws = sizes.map((s) => s[1]);
console.log(
  JSON.stringify({
    events: total,
    requests: sizes.length,
    seconds,
    max_body: Math.max(0, ...sizes.map((s) => s[0])),
    max_raw: Math.max(0, ...raws),
    mean_raw: raws.length ? raws.reduce((a, b) => a + b, 0) / raws.length : 0,
    encodings: [...encodings],
    failed,
  }),
);
process.exit(failed ? 1 : 0);
