import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createApp } from '../server/http/app.ts';
import { openApiDocument } from '../server/http/openapi.ts';
import { startTestServer } from './support/blockcore-server.ts';

const METHODS = ['get', 'post', 'put', 'delete', 'patch'];

test('every route the app answers is in the OpenAPI document, and nothing else', async () => {
  const server = await startTestServer();
  try {
    const app = createApp({ service: server.running.service, token: null });
    const routes = new Set(
      app.routes
        .filter((route) => route.method !== 'ALL')
        .map((route) => `${route.method} ${route.path.replace(/:(\w+)(\{[^}]*\})?/g, '{$1}')}`),
    );
    const documented = new Set(
      Object.entries(openApiDocument.paths).flatMap(([path, item]) =>
        Object.keys(item).filter((key) => METHODS.includes(key)).map((method) => `${method.toUpperCase()} ${path}`),
      ),
    );
    assert.equal([...routes].sort(), [...documented].sort());
    assert.ok(routes.size >= 18, `${routes.size} routes`);

    const served = await server.call('GET', '/v1/openapi.json');
    assert.is(served.status, 200);
    assert.is(served.json.openapi, '3.1.0');
    assert.equal(Object.keys(served.json.paths).sort(), Object.keys(openApiDocument.paths).sort());
    // every $ref resolves
    const refs = served.text.match(/#\/components\/schemas\/\w+/g) ?? [];
    for (const ref of new Set(refs)) assert.ok(served.json.components.schemas[ref.split('/').pop()!], ref);
  } finally {
    await server.dispose();
  }
});

test.run();
