/** GET /v1/cluster: this service as a cluster node (its name and id) and, with --etcd, what etcd says. */
import { z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Service } from '../service.ts';
import { addRoute } from './route.ts';
import { Count, jsonAnswer } from './schemas.ts';

const Member = z.strictObject({
  name: z.string(),
  slot: Count.openapi({ description: 'The DLM slot (1-based); the md bitmap slot is one less.' }),
  node: z.string().nullable().openapi({ description: 'The node id of the service the member runs in.' }),
});

const ClusterInfo = z
  .strictObject({
    node: z.strictObject({
      name: z.string().openapi({ description: 'This service\'s node name (--node-name, default the host name).' }),
      id: z.string().openapi({ description: 'A UUID kept in the data directory: the same data directory is the same node across restarts.' }),
    }),
    etcd: z
      .strictObject({
        urls: z.array(z.string()),
        reachable: z.boolean().openapi({ description: 'Whether etcd answered this request.' }),
        leaseTtlSeconds: Count,
        leaseId: z.string().openapi({ description: 'The lease this node\'s registration lives on.' }),
        nodes: z.array(z.strictObject({ name: z.string(), id: z.string() })).openapi({ description: 'Every node registered in etcd.' }),
        lockspaces: z.array(z.strictObject({
          lockspace: z.string().openapi({ description: 'An array\'s lockspace (its uuid) or a clustered log\'s.' }),
          memberName: z.string(),
          slot: Count,
          leaseId: z.string(),
          writesAllowedForMs: Count.openapi({ description: 'How long this node may still write to the shared legs without another lease renewal.' }),
          members: z.array(Member),
        })),
      })
      .nullable()
      .openapi({ description: 'null when the service runs without --etcd.' }),
  })
  .openapi('Cluster');

export function clusterRoutes(app: OpenAPIHono, service: Service): void {
  addRoute(
    app,
    { method: 'get', path: '/v1/cluster', summary: 'This node: name, id, and with --etcd the registered nodes, lockspaces with their members and slots, our leases, whether etcd answers.', responses: { 200: jsonAnswer('The node.', ClusterInfo) }, errors: [401] },
    async (c) => c.json(await service.cluster.info()),
  );
}
