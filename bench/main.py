"""Placeholder entry so the CLI resolves; replaced by the load generator."""


def main(argv: list[str]) -> int:
    print("roomcast bench: not available in this build")
    return 2
