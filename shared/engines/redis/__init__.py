"""The Redis engine (see shared/engines/roles.py for the roles it plays)."""
