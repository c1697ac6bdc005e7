"""The command line (``python -m latentlab``): train a face model, the step and slider benchmarks."""
