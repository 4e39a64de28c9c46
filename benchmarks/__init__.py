"""vrfam_rt.benchmarks: latency/throughput harness, profiling, reports."""
