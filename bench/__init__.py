"""reelscore's benchmark suite: `make bench` runs `python -m bench.run --scale $(SCALE)`."""
