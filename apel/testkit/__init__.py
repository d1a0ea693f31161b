"""Real services and a throwaway PKI for tests, benchmarks and the quick start."""
