// Sends N events in batches of 10 with the official posthog-node client, retrying what the
// host refuses with 429 (or 5xx) as posthog-node does, a second apart.
// Usage: node flood.mjs HOST TOKEN N
// Exits 1 when the client gave up on a batch, 0 when every batch was accepted.
import { PostHog } from 'posthog-node';

const [host, token, n] = process.argv.slice(2);
const client = new PostHog(token, {
  host,
  flushAt: 10,
  maxBatchSize: 10,
  flushInterval: 60000,
  fetchRetryCount: 30,
  fetchRetryDelay: 1000,
  requestTimeout: 10000,
});
let failed = false;
client.on('error', (err) => {
  failed = true;
  console.error(`posthog-node error: ${err && err.message ? err.message : err}`);
});
for (let i = 0; i < Number(n); i++) {
  client.capture({
    distinctId: `user-${i % 7}`,
    event: 'segmentation_api_success',
    properties: { duration_ms: 100 + i },
  });
}
await client.shutdown(120000);
process.exit(failed ? 1 : 0);
