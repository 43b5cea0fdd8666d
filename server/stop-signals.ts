/**
 * How `serve` waits for the signal that stops it. SIGINT or SIGTERM asks for a clean stop.
 *
 * One request can arrive as two signals: a terminal's Ctrl-C goes to every process of the
 * foreground group, and `npm start` forwards the SIGINT it got to the service as well. So a repeat
 * within REPEAT_GRACE_MS of the first signal is the same request and is ignored; a later one (Ctrl-C
 * pressed again while the stop hangs) exits at once with FORCED_EXIT_CODE.
 *
 * The listeners stay installed from the first wait to dispose(): with none installed, even for the
 * moment between removing one and adding the next, the runtime restores the default action, and a
 * signal then kills the process before its clean stop.
 */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;
export const REPEAT_GRACE_MS = 1000;
export const FORCED_EXIT_CODE = 130;

export type StopSignal = (typeof STOP_SIGNALS)[number];

export interface StopSignalWatch {
  /** Resolves with the first stop signal. */
  readonly first: Promise<StopSignal>;
  /** Removes the listeners. */
  dispose(): void;
}

export interface StopSignalOptions {
  /** Called on a repeat after the grace period; default: exit with FORCED_EXIT_CODE. */
  onForced?: (signal: StopSignal) => void;
  nowMs?: () => number;
}

export function watchStopSignals(options: StopSignalOptions = {}): StopSignalWatch {
  const onForced = options.onForced ?? (() => process.exit(FORCED_EXIT_CODE));
  const nowMs = options.nowMs ?? (() => performance.now());
  let firstAtMs: number | null = null;
  let resolveFirst!: (signal: StopSignal) => void;
  const first = new Promise<StopSignal>((resolve) => (resolveFirst = resolve));
  const listeners = STOP_SIGNALS.map((signal) => {
    const listener = () => {
      if (firstAtMs === null) {
        firstAtMs = nowMs();
        resolveFirst(signal);
      } else if (nowMs() - firstAtMs > REPEAT_GRACE_MS) {
        onForced(signal);
      }
    };
    process.on(signal, listener);
    return [signal, listener] as const;
  });
  return {
    first,
    dispose: () => {
      for (const [signal, listener] of listeners) process.off(signal, listener);
    },
  };
}
