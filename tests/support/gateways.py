"""Extra gateways with their own settings on a Stack's Redis, started side by side."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from roomcast.cli.embedded_redis import free_port
from tests.support.stack import Gateway, Stack


def custom_gateway(stack: Stack, name: str, overrides: dict[str, str | None]) -> Gateway:
    """A gateway (not started) with the stack's env plus `overrides`; None unsets a variable
    (e.g. JWT_SECRET for a gateway verifying RS256 with JWT_PUBLIC_KEY)."""
    env = dict(stack.env)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    port = free_port()
    gateway = Gateway(port=port, instance_id=f"test-gw-{name}-{port}", env=env,
                      log_path=stack.workdir / f"gateway-{name}-{port}.log")
    stack.gateways.append(gateway)  # Stack.stop() stops it with the others
    return gateway


def start_all(gateways: list[Gateway], timeout: float = 60.0) -> list[Gateway]:
    """Start the gateways concurrently (each start waits for /readyz)."""
    with ThreadPoolExecutor(max_workers=max(1, len(gateways))) as pool:
        list(pool.map(lambda g: g.start(timeout), gateways))
    return gateways
