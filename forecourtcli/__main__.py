"""`python -m forecourtcli` is the `forecourt` command."""

import sys

from forecourtcli.main import main

sys.exit(main())
