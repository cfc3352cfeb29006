import sys

from eapkit.cli import main

sys.exit(main())
