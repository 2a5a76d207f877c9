"""Running dp2 on more than one machine (optional extras: ``pip install 'dp2-anonymizer[ray]'``)."""
