"""Ratio benchmarks: each compares ppl-lvm against a baseline measured in the same run."""
