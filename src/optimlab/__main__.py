"""``python -m optimlab``: the same command as the ``optimlab`` console script."""

from optimlab.cli import main

if __name__ == "__main__":
    main()
