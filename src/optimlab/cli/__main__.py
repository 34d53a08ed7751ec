"""``python -m optimlab.cli``: the same command as ``optimlab`` and ``python -m optimlab``."""

from optimlab.cli import main

if __name__ == "__main__":
    main()
