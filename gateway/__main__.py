"""`python -m gateway`: one gateway instance."""

import sys

from roomcast.cli.main import main

if __name__ == "__main__":
    main(["gateway", *sys.argv[1:]])
