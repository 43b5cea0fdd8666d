/**
 * A promise settled from outside (Promise.withResolvers, which Node 20 lacks). Its rejection is
 * marked handled here: whoever awaits it sees the error; nobody awaiting it is not a crash.
 */
export interface Deferred<T = void> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}
