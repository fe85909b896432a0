"""``python -m skbn``: the same command line as the ``skbn`` script."""

from .cli import main

# The guard keeps pytest's --doctest-modules, which imports every module,
# from running the command line.
if __name__ == "__main__":
    raise SystemExit(main())
