// Sends the seed's client events to a PostHog host with the official posthog-node client:
// a queued batch (gzip, one request) and three events sent one by one (captureImmediate).
// Usage: node capture.mjs HOST TOKEN
// Exits 1 when the client reports an error (a refused request), 0 when all were accepted.
import { PostHog } from 'posthog-node';

const [host, token] = process.argv.slice(2);
const client = new PostHog(token, {
  host,
  flushAt: 1000,
  flushInterval: 60000,
  fetchRetryCount: 0,
  requestTimeout: 10000,
});
let failed = false;
client.on('error', (err) => {
  failed = true;
  console.error(`posthog-node error: ${err && err.message ? err.message : err}`);
});

// The batch: 20 API durations, 10 dashboard views by data mode, two heap snapshots, two errors.
for (let i = 1; i <= 20; i++) {
  client.capture({
    distinctId: i % 2 ? 'agency-1' : 'agency-2',
    event: 'segmentation_api_success',
    properties: { duration_ms: i * 10, customer_count: 100 + i, segment_count: 4 },
  });
}
for (let i = 0; i < 10; i++) {
  client.capture({
    distinctId: `user-${i % 4}`,
    event: 'segmentation_dashboard_viewed',
    properties: { data_mode: i < 7 ? 'live' : 'demo', customer_count: 120, segment_count: 4 },
  });
}
client.capture({ distinctId: 'user-1', event: 'segmentation_memory_snapshot', properties: { used_js_heap_mb: 120 } });
client.capture({ distinctId: 'user-2', event: 'segmentation_memory_snapshot', properties: { used_js_heap_mb: 180 } });
for (const id of [17, 42]) {
  client.capture({
    distinctId: 'user-3',
    event: 'segmentation_error_occurred',
    properties: { error_message: `Segmentation failed for portfolio ${id}` },
  });
}
await client.flush();

// One by one.
for (const ms of [1000, 2000, 3000]) {
  await client.captureImmediate({
    distinctId: 'agency-3',
    event: 'segmentation_api_success',
    properties: { duration_ms: ms },
  });
}
await client.shutdown();
process.exit(failed ? 1 : 0);
