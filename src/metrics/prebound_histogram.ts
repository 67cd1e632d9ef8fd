/**
 * A Prometheus histogram for the proxy's hot path. prom-client's `observe()` hashes its labels
 * and allocates on every call; here each labelled series is made once, kept by its caller, and
 * an observation is a bucket search over a few numbers and three additions. The registry reads
 * the series only when it is scraped, in prom-client's own exposition shape.
 */
import type { Metric, Registry } from 'prom-client';

type Labels = Readonly<Record<string, string>>;

/** One labelled series: observations per bucket (not cumulative), their sum and count. */
export class HistogramSeries {
  /** counts[i] holds values <= bounds[i] and > bounds[i - 1]; the last slot holds the rest. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    private readonly bounds: Float64Array,
    readonly labels: Labels,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Records one value in seconds; NaN and negative values (a clock step) count as 0. */
  observe(value: number): void {
    const v = Math.max(value, 0) || 0;
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && v > bounds[i]!) i++;
    this.counts[i] = this.counts[i]! + 1;
    this.sum += v;
    this.count++;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

interface ExportedValue {
  labels: Labels;
  value: number;
  metricName: string;
}

/** A histogram whose series are pre-bound; registered in one registry like any prom-client metric. */
export class PreboundHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly bounds: Float64Array;
  private readonly leValues: string[];
  private readonly all: HistogramSeries[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    buckets: readonly number[],
    registry: Registry,
  ) {
    this.bounds = Float64Array.from(buckets);
    this.leValues = [...buckets.map(String), '+Inf'];
    // The registry reads a metric only through name, help, type, get() and reset(), which this
    // class has; prom-client's types name its own classes only.
    registry.registerMetric(this as unknown as Metric);
  }

  /** A new series with these labels; call once per label set and keep it. */
  series(labels: Labels = {}): HistogramSeries {
    const series = new HistogramSeries(this.bounds, labels);
    this.all.push(series);
    return series;
  }

  /** The exposition values (cumulative buckets, +Inf, sum, count), as the registry reads them. */
  async get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: ExportedValue[];
  }> {
    const values: ExportedValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.all) {
      let cumulative = 0;
      for (let i = 0; i < s.counts.length; i++) {
        cumulative += s.counts[i]!;
        values.push({
          labels: { ...s.labels, le: this.leValues[i]! },
          value: cumulative,
          metricName: bucket,
        });
      }
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** Zeroes every series (registry.resetMetrics()). */
  reset(): void {
    for (const s of this.all) s.reset();
  }
}
