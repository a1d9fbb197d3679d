"""taskboard: the reference application of roomcast (see examples/taskboard/README.md)."""
