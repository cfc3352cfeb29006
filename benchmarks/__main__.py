"""``python -m benchmarks``: every benchmark in one table (see :mod:`benchmarks.runner`)."""

from __future__ import annotations

import sys

from benchmarks.runner import main

sys.exit(main())
