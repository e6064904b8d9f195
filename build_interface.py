#!/usr/bin/env python
"""Start a new osnas component from this checkout: ``python build_interface.py -it KIND --customize-name NAME``.

The same entry point as the ``build_interface`` console script and ``osnas new``.
"""

from osnas.interface.cli import main

if __name__ == "__main__":
    main()
