"""``python -m reduct_twisted``: the admin CLI (``reduct-twisted`` console script)."""

import sys

from reduct_twisted.admin.cli import main

if __name__ == "__main__":
    sys.exit(main())
