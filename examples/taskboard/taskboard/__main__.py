"""`python -m taskboard`: Redis, a worker, the gateways and the backend (runner.py)."""

from taskboard.runner import main

if __name__ == "__main__":
    main()
