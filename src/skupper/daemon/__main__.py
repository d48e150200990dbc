import sys

from skupper.daemon.main import main

sys.exit(main())
