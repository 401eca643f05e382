// The benchmark (throughput and latency side by side with the raw JetStream limit and the
// peers) arrives with the JetStream store; until then this says so and exits non-zero so no
// one mistakes it for a result.
process.stderr.write(
  'jetactor bench: not implemented yet; it needs the JetStream event store. No figures are claimed.\n',
);
process.exitCode = 1;
