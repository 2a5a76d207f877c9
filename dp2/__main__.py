"""``python -m dp2``: the command line (see :mod:`dp2.cli`)."""
from .cli import main

if __name__ == "__main__":  # python -m dp2: the same command as dp2-anonymize
    main()
