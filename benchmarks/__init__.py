"""Benchmarks: each module has run(quick) -> list[dict] and main() printing a Markdown table."""
