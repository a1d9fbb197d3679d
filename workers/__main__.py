"""`python -m workers`: the Dramatiq worker for workers.actors."""

from roomcast.cli.main import main

if __name__ == "__main__":
    main(["worker"])
