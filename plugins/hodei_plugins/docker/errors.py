"""Docker SDK errors, translated at the edge into one line for the operator."""

from __future__ import annotations

from typing import Any

from hodei_plugins.provider import ProviderError

BUILD_HINT = (
    "build it with scripts/build-agent-image.sh (offline), or "
    "`docker build -f plugins/hodei_plugins/docker/Dockerfile -t {image} .` "
    "where a registry is reachable"
)


class DockerProviderError(ProviderError):
    """The Docker provider cannot reach the engine or run the agent image."""


def unreachable(host: str, exc: BaseException) -> DockerProviderError:
    return DockerProviderError(
        f"cannot reach the Docker engine at {host}: {_os_reason(exc)}; is dockerd running? "
        "(scripts/docker-engine.sh starts one)"
    )


def image_missing(image: str, host: str) -> DockerProviderError:
    return DockerProviderError(
        f"the agent image {image} is not on the Docker engine at {host}; "
        + BUILD_HINT.format(image=image)
    )


def translate(exc: BaseException, host: str, doing: str) -> DockerProviderError:
    """One clear message for a docker SDK (or requests) error raised while `doing`."""
    import docker.errors
    import requests.exceptions

    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError | FileNotFoundError):
        return unreachable(host, exc)
    if isinstance(exc, docker.errors.APIError):
        explanation: Any = exc.explanation or exc
        return DockerProviderError(
            f"Docker engine at {host} refused to {doing}: {_first_line(explanation)}"
        )
    if isinstance(exc, docker.errors.DockerException):
        text = str(exc)
        if "Error while fetching server API version" in text or "Connection" in text:
            return unreachable(host, exc)
        return DockerProviderError(f"Docker provider could not {doing}: {_first_line(text)}")
    return DockerProviderError(f"Docker provider could not {doing}: {_first_line(exc)}")


def _os_reason(exc: BaseException) -> str:
    """The OS error under the SDK's and requests' wrappers, e.g. "Connection refused"."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
        todo += [item.__cause__, item.__context__, *item.args]
    return _first_line(exc)


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
