// Sends two simulated days of dashboard events with PostHog session ids through the official
// posthog-node client, each event dated (`timestamp`) from START_MS on:
//   day 1: s1 0–20 min (4 events, 2 refreshes), s2 60–70 min (2 events, 1 refresh),
//          s3 120–130 min (2 events), then s3 again after 40 idle minutes at 170–185 min
//          (2 events, 1 refresh: a new session of the same id);
//   day 2: s4 24 h–24 h 29 min (3 events, 1 refresh), s5 26 h (1 event);
//   48 h: one event of s6, which ends every other session and stays open itself.
// Usage: node sessions.mjs HOST TOKEN START_MS
import { PostHog } from 'posthog-node';

const [host, token, start] = process.argv.slice(2);
const t0 = Number(start);
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

const minute = 60 * 1000;
const events = [
  ['s1', 'user-1', 0, 'segmentation_dashboard_viewed'],
  ['s1', 'user-1', 5, 'segmentation_data_refreshed'],
  ['s1', 'user-1', 12, 'segmentation_data_refreshed'],
  ['s1', 'user-1', 20, 'segmentation_segment_clicked'],
  ['s2', 'user-2', 60, 'segmentation_dashboard_viewed'],
  ['s2', 'user-2', 70, 'segmentation_data_refreshed'],
  ['s3', 'user-3', 120, 'segmentation_dashboard_viewed'],
  ['s3', 'user-3', 130, 'segmentation_segment_clicked'],
  ['s3', 'user-3', 170, 'segmentation_dashboard_viewed'],
  ['s3', 'user-3', 185, 'segmentation_data_refreshed'],
  ['s4', 'user-1', 24 * 60, 'segmentation_dashboard_viewed'],
  ['s4', 'user-1', 24 * 60 + 15, 'segmentation_data_refreshed'],
  ['s4', 'user-1', 24 * 60 + 29, 'segmentation_segment_clicked'],
  ['s5', 'user-4', 26 * 60, 'segmentation_dashboard_viewed'],
  ['s6', 'user-2', 48 * 60, 'segmentation_dashboard_viewed'],
];
for (const [session, user, at, event] of events) {
  client.capture({
    distinctId: user,
    event,
    properties: { $session_id: session, data_mode: 'live' },
    timestamp: new Date(t0 + at * minute),
  });
}
await client.shutdown();
process.exit(failed ? 1 : 0);
