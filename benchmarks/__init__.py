"""On-demand performance benchmarks of fsan-lightning (`make bench`, `make bench-gpu`); never run by pytest.

Every reported figure is a ratio of two times measured in the same run (the same process where it
matters), so it holds on a loaded machine. See benchmarks/README.md.
"""
