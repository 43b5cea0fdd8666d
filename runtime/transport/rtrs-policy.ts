/**
 * Multipath policies (rtrs-clt.c, sysfs mp_policy): which connected path takes the next request.
 *   round-robin    each path in turn
 *   min-inflight   the path with the fewest requests in flight (default)
 *   min-latency    the path with the lowest heartbeat round trip (ties: fewest in flight)
 */
export const POLICIES = ['round-robin', 'min-inflight', 'min-latency'] as const;
export type Policy = (typeof POLICIES)[number];

export interface PolicyCandidate {
  inflight: number;
  latencyMs: number;
}

/** Index into `paths` (all connected) of the one to use; `turn` counts choices for round-robin. */
export function choosePath(policy: Policy, paths: readonly PolicyCandidate[], turn: number): number {
  if (paths.length <= 1) return 0;
  if (policy === 'round-robin') return turn % paths.length;
  let best = 0;
  for (let i = 1; i < paths.length; i++) {
    const a = paths[i]!;
    const b = paths[best]!;
    const better = policy === 'min-latency'
      ? a.latencyMs < b.latencyMs || (a.latencyMs === b.latencyMs && a.inflight < b.inflight)
      : a.inflight < b.inflight;
    if (better) best = i;
  }
  return best;
}
