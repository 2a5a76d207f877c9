#!/usr/bin/env python
"""DeepPrivacy2-compatible entry point: ``python anonymize.py CONFIG -i INPUT -o OUTPUT``."""
from dp2.cli import main

if __name__ == "__main__":
    main()
