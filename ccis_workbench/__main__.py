from __future__ import annotations

import sys

from ccis_workbench.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
