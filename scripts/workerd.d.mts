/** Types of scripts/workerd.mjs, for the tests that run the Worker. */
export declare const WORKERD: string;
export declare const WORKER_DIR: string;
export declare function workerdConfig(dir: string, options: { host?: string; port: number; storageDir: string; token?: string | null }): string;
export declare function workerdArgs(config: string): string[];
