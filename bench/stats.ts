/** Shared helpers for benchmarks: medians of interleaved rounds and the `ratio` line format. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Runs each contender once per round, in the same order every round (A B C A B C ...). */
export async function interleave<K extends string>(
  rounds: number,
  contenders: Record<K, () => number | Promise<number>>,
): Promise<Record<K, number[]>> {
  const results = {} as Record<K, number[]>;
  for (const key of Object.keys(contenders) as K[]) results[key] = [];
  for (let round = 0; round < rounds; round++) {
    for (const key of Object.keys(contenders) as K[]) results[key].push(await contenders[key]());
  }
  return results;
}

/** `ratio <what>: <ours/peer>` — above 1 means ours is better. Both are "higher is better" rates. */
export function ratioLine(what: string, oursRate: number, peerRate: number): string {
  return `ratio ${what}: ${(oursRate / peerRate).toFixed(3)}`;
}

/** CPU time of this process in ms: others share this machine's cores, and wall time would count their turns. */
export function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** Runs `op` for about `sampleMs` of CPU time (in whole batches of `reps`); returns operations per CPU second. */
export function cpuSampler(op: () => void, sampleMs: number): () => number {
  let reps = 1;
  return () => {
    for (;;) {
      const start = cpuMs();
      for (let i = 0; i < reps; i++) op();
      const elapsedMs = cpuMs() - start;
      if (elapsedMs >= sampleMs / 4) {
        if (elapsedMs < sampleMs) reps = Math.ceil(reps * sampleMs / Math.max(elapsedMs, 0.01));
        return (reps * 1000) / elapsedMs;
      }
      reps *= 4;
    }
  };
}
