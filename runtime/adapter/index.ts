/** Picks the one adapter for the runtime we are on. The only place that asks which runtime this is. */
import type { RuntimeAdapter, RuntimeName } from './types.ts';

export type { RuntimeAdapter, RuntimeName } from './types.ts';

export function detectRuntime(): RuntimeName {
  if ('Bun' in globalThis) return 'bun';
  if ('Deno' in globalThis) return 'deno';
  return 'node';
}

let loaded: Promise<RuntimeAdapter> | undefined;

export function loadAdapter(): Promise<RuntimeAdapter> {
  loaded ??= importAdapter(detectRuntime());
  return loaded;
}

async function importAdapter(name: RuntimeName): Promise<RuntimeAdapter> {
  switch (name) {
    case 'bun':
      return (await import('./bun.ts')).adapter;
    case 'deno':
      return (await import('./deno.ts')).adapter;
    case 'node':
      return (await import('./node.ts')).adapter;
  }
}
