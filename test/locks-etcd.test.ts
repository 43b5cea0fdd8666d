/**
 * The etcd lock manager against the lock-manager conformance suite (cases and the seeded model
 * test), on every runtime, with a real etcd started by the test: each harness is a manager of its
 * own (its own key root) over a connection of its own.
 */
import { EtcdLockManager } from '../runtime/locks/etcd/etcd-lock-manager.ts';
import { EtcdStore } from '../runtime/locks/etcd/etcd-store.ts';
import { lockManagerConformance } from './conformance/lock-manager-suite.ts';
import { killEtcds, startEtcd, type TestEtcd } from './support/etcd.ts';

let etcd: Promise<TestEtcd> | null = null;
let harnesses = 0;

lockManagerConformance('etcd', async () => {
  etcd ??= startEtcd();
  const store = await EtcdStore.connect({ urls: [(await etcd).url] });
  const manager = new EtcdLockManager(store, { root: `/conformance/${++harnesses}/` });
  return {
    manager,
    kill: (space) => manager.kill(space),
    settle: () => manager.settle(),
    async close() {
      await manager.close();
      store.close();
    },
  };
}, async () => {
  await (await etcd)?.stop();
  killEtcds();
});
