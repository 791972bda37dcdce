/**
 * The process's own metrics, under the names Prometheus client libraries
 * use. prom-client's collectDefaultMetrics is not used: three of its gauges
 * end in `_total` (nodejs_active_handles_total…), which `promtool check
 * metrics` rejects, and it brings some thirty families a key daemon's
 * dashboard does not read.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, type Registry } from 'prom-client';

/** Register the families; returns what stops the event-loop sampler. */
export function registerProcessMetrics(registry: Registry): () => void {
  const registers = [registry];
  new Gauge({
    name: 'process_resident_memory_bytes', help: 'Resident memory size in bytes.', registers,
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Gauge({
    name: 'nodejs_heap_size_used_bytes', help: 'V8 heap in use, bytes.', registers,
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  new Counter({
    name: 'process_cpu_seconds_total', help: 'User and system CPU time spent, seconds.', registers,
    collect() {
      const u = process.cpuUsage();
      this.reset();
      this.inc((u.user + u.system) / 1e6);
    },
  });
  new Gauge({ name: 'process_start_time_seconds', help: 'Start time of the process since the Unix epoch, seconds.', registers }).set(Math.round(Date.now() / 1000 - process.uptime()));
  // Sampled every 20 ms by a libuv timer: the one standing cost of metrics, and what tells an operator the event loop is starved.
  const delay = monitorEventLoopDelay({ resolution: 20 });
  delay.enable();
  new Gauge({
    name: 'nodejs_eventloop_lag_p99_seconds', help: 'The 99th percentile of event loop delay since the previous scrape, seconds.', registers,
    collect() {
      this.set(delay.count === 0 ? 0 : delay.percentile(99) / 1e9);
      delay.reset();
    },
  });
  return () => delay.disable();
}
