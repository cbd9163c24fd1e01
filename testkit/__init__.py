"""What the tests and the benchmarks share to drive live workers; not part of the shipped package."""
