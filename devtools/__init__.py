"""Developer tooling kept out of the runtime package: benchmarks (``python -m devtools.bench``) and
stand-in TotalSegmentator models for tests and benchmarks. Run from the repository root."""
