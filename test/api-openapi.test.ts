/**
 * The OpenAPI document is generated from the route definitions (server/http/route.ts): every route
 * the app serves is in it and nothing else, every $ref resolves, and every documented route
 * answers (with something other than "no route").
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createApp } from '../server/http/app.ts';
import { startTestServer } from './support/blockcore-server.ts';

const METHODS = ['get', 'post', 'put', 'delete', 'patch'];

test('every route the app answers is in the OpenAPI document, and every documented route answers', async () => {
  const server = await startTestServer();
  try {
    const app = createApp({ service: server.running.service, token: null });
    const routes = new Set(
      app.routes
        .filter((route) => route.method !== 'ALL')
        .map((route) => `${route.method} ${route.path.replace(/:(\w+)(\{[^}]*\})?/g, '{$1}')}`),
    );
    const served = await server.call('GET', '/v1/openapi.json');
    assert.is(served.status, 200);
    assert.is(served.json.openapi, '3.1.0');
    const paths = served.json.paths as Record<string, Record<string, unknown>>;
    const documented = new Set(
      Object.entries(paths).flatMap(([path, item]) => Object.keys(item).filter((key) => METHODS.includes(key)).map((method) => `${method.toUpperCase()} ${path}`)),
    );
    assert.equal([...routes].sort(), [...documented].sort());
    assert.ok(routes.size >= 18, `${routes.size} routes`);
    // every $ref resolves
    const refs = served.text.match(/#\/components\/schemas\/\w+/g) ?? [];
    assert.ok(refs.length > 10);
    for (const ref of new Set(refs)) assert.ok(served.json.components.schemas[ref.split('/').pop()!], ref);
    // every documented route is served: a request to it is not "no route" (404 ENOENT for a missing name is fine)
    for (const key of documented) {
      if (key === 'GET /v1/events') continue; // a stream that stays open: test/api-events
      const [method, path] = key.split(' ') as [string, string];
      const answer = await server.call(method, path.replace('{name}', 'nothing-here'), method === 'POST' ? {} : undefined);
      assert.ok(!/^no route/.test(answer.json?.error ?? ''), `${key}: ${answer.status} ${answer.text.slice(0, 120)}`);
      const documentedStatuses = Object.keys((paths[path]![method.toLowerCase()] as { responses: object }).responses);
      assert.ok(documentedStatuses.includes(String(answer.status)), `${key} answered ${answer.status}, documented ${documentedStatuses}`);
    }
    // request bodies name their fields' limits
    const newDevice = served.json.components.schemas.NewDevice;
    assert.equal(newDevice.required.sort(), ['name', 'sizeBytes']);
    assert.is(newDevice.additionalProperties, false);
  } finally {
    await server.dispose();
  }
});

test.run();
