"""Benchmarks: `liteframe bench ...`. Each compares its subjects side by side in one run."""
