/**
 * The Prometheus text exposition format (version 0.0.4): for each family a `# HELP` and a `# TYPE`
 * line, then one `name{label="value",...} number` line per sample. Label values are escaped
 * (backslash, double quote, newline); names are checked against the format's grammar, so a bad
 * metric name is a bug caught at once.
 */
import { assert } from '../runtime/assert.ts';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export type MetricType = 'counter' | 'gauge';
export interface Sample {
  labels?: Record<string, string>;
  value: number;
}

export class PromText {
  private readonly lines: string[] = [];
  private readonly names = new Set<string>();

  family(name: string, type: MetricType, help: string, samples: readonly Sample[]): this {
    assert(METRIC_NAME.test(name) && !this.names.has(name), `bad or repeated metric name ${name}`);
    assert(type !== 'counter' || name.endsWith('_total'), `counter ${name} must end in _total`);
    this.names.add(name);
    this.lines.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`);
    for (const sample of samples) this.lines.push(`${name}${formatLabels(sample.labels)} ${formatValue(sample.value)}`);
    return this;
  }

  toString(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

function formatLabels(labels: Record<string, string> | undefined): string {
  if (!labels) return '';
  const parts = Object.entries(labels).map(([key, value]) => {
    assert(LABEL_NAME.test(key), `bad label name ${key}`);
    return `${key}="${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
  });
  return parts.length ? `{${parts.join(',')}}` : '';
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}
