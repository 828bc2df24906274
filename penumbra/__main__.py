import sys

from penumbra.cli import main

sys.exit(main())
