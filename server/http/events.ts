/**
 * GET /v1/events: the service's events as Server-Sent Events. Each is `id: <n>`, `event: <type>`,
 * `data: <the event as JSON>`. New events only, unless the client asks for recent ones with
 * `?since=<id>` or the standard Last-Event-ID header (the hub keeps the last RING_EVENTS). A
 * comment line every PING_MS keeps proxies from closing an idle stream. The stream ends when the
 * client goes away, when it reads so slowly that PENDING_WRITES_MAX writes wait (its buffer would
 * otherwise grow without bound; it may reconnect with Last-Event-ID), or when the service stops.
 * HEAD answers the headers alone and subscribes to nothing.
 */
import { z, type OpenAPIHono } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import { invalid } from '../errors.ts';
import type { EventHub, ServiceEvent } from '../event-hub.ts';
import { addRoute } from './route.ts';
import { byCheck, Count } from './schemas.ts';

export const PING_MS = 15_000;
export const PENDING_WRITES_MAX = 1024;

function parseSince(value: string | undefined, field: string): number | null {
  if (value === undefined || value === '') return null;
  if (!/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) throw invalid(field, 'must be a non-negative integer event id');
  return Number(value);
}

const CORE_EVENT_TYPES = ['device.created', 'device.removed', 'export.added', 'export.removed', 'export.connect', 'export.disconnect', 'nbd.protocol-error'];

const EventQuery = z.strictObject({
  since: z
    .string()
    .superRefine(byCheck((value, field) => parseSince(value, field)))
    .optional()
    .openapi({ description: 'Replay kept events after this id first (an id from an earlier run, or one not given yet, replays every kept event: ids keep rising across restarts).' }),
});

const EventHeaders = z.object({ 'last-event-id': z.string().optional().openapi({ description: 'As `since`, set by EventSource on reconnect.' }) });

/** `engineEventTypes`: `<kind>.<type>` of the engines the host has. */
const eventSchema = (engineEventTypes: readonly string[]) => z
  .object({
    id: Count,
    type: z.string().openapi({
      description: [...CORE_EVENT_TYPES, ...engineEventTypes].join(', '),
    }),
    timeMs: Count,
  })
  .passthrough()
  .openapi('Event');

export function eventRoutes(app: OpenAPIHono, hub: EventHub, engineEventTypes: readonly string[]): void {
  const Event = eventSchema(engineEventTypes);
  const route = {
    method: 'get',
    path: '/v1/events',
    summary: 'Server-Sent Events: one `event: <type>` / `data: <Event JSON>` per change, with `id:`.',
    query: EventQuery,
    headers: EventHeaders,
    responses: { 200: { description: 'An event stream.', content: { 'text/event-stream': { schema: Event } } } },
    errors: [400, 401],
  } as const;
  addRoute(app, route, (c, { query }) => {
    const since = parseSince(query.since, 'since') ?? parseSince(c.req.header('last-event-id'), 'Last-Event-ID');
    c.header('x-accel-buffering', 'no');
    if (c.req.method === 'HEAD') return c.body(null, 200, { 'content-type': 'text/event-stream' });
    return streamSSE(c, async (stream) => {
      let finish = () => {};
      const finished = new Promise<void>((resolve) => (finish = resolve));
      let queue: Promise<void> = stream.write(`: connected, last event ${hub.lastId}\n\n`).then(() => {});
      let pendingWrites = 0;
      const enqueue = (write: () => Promise<unknown>) => {
        if (++pendingWrites > PENDING_WRITES_MAX) return finish();
        queue = queue.then(write).then(() => void pendingWrites--, finish);
      };
      const send = (event: ServiceEvent) => enqueue(() => stream.writeSSE({ id: String(event.id), event: event.type, data: JSON.stringify(event) }));
      // since() and subscribe() run in one turn, so no event falls between them.
      if (since !== null) for (const event of hub.since(since)) send(event);
      const unsubscribe = hub.subscribe({ event: send, closed: finish });
      const ping = setInterval(() => enqueue(() => stream.write(': ping\n\n')), PING_MS);
      stream.onAbort(finish);
      await finished;
      clearInterval(ping);
      unsubscribe();
      // Not awaiting `queue`: for a client that stopped reading it would never settle; closing the
      // stream after it flushes what it can is all that is left to do.
    });
  });
}
