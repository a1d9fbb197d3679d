"""The uvicorn protocol subclass checks, before serving, that uvicorn still has what it
uses, and stops with one line naming the installed version otherwise."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import uvicorn

from gateway import ws_protocol
from gateway.ws_protocol import RoomcastWebSocketProtocol, UnsupportedUvicorn, check_compatible


def _config() -> uvicorn.Config:
    async def app(scope: object, receive: object, send: object) -> None:
        """An ASGI app that is never called."""

    return uvicorn.Config(app, ws=RoomcastWebSocketProtocol)


def test_the_pinned_uvicorn_has_everything_the_protocol_uses() -> None:
    check_compatible(_config())


def test_a_uvicorn_without_an_attribute_is_one_line_naming_its_version(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # stands for a future uvicorn that renamed an attribute of its protocol
    monkeypatch.setattr(ws_protocol, "REQUIRED_ATTRIBUTES",
                        (*ws_protocol.REQUIRED_ATTRIBUTES, "renamed_in_a_later_release"))
    with pytest.raises(UnsupportedUvicorn) as caught:
        check_compatible(_config())
    message = str(caught.value)
    assert "\n" not in message and version("uvicorn") in message
    assert "renamed_in_a_later_release" in message and "pyproject.toml" in message
