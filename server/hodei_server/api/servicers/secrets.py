"""SecretService: set, delete and list the built-in store's secrets. Values go in, never out."""

from __future__ import annotations

import datetime as dt

import grpc
from google.protobuf import timestamp_pb2

from hodei_api.v1 import secrets_pb2, secrets_pb2_grpc
from hodei_server.api.status import unary
from hodei_server.security.authz import principal
from hodei_server.security.secretstore import BUILTIN, Row, SecretStore


def _actor(context: grpc.aio.ServicerContext) -> str:
    """The API token the call came with (the interceptor checked its role)."""
    return principal().actor


def _ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def secret_info(row: Row) -> secrets_pb2.SecretInfo:
    return secrets_pb2.SecretInfo(
        name=row["name"], backend=BUILTIN, created_at=_ts(row["created_at"]),
        updated_at=_ts(row["updated_at"]), updated_by=row["updated_by"],
        key_id=row["key_id"], size_bytes=row["size_bytes"],
    )


class SecretServicer(secrets_pb2_grpc.SecretServiceServicer):
    def __init__(self, store: SecretStore) -> None:
        self.store = store

    @unary
    async def SetSecret(
        self, request: secrets_pb2.SetSecretRequest, context: grpc.aio.ServicerContext
    ) -> secrets_pb2.SetSecretResponse:
        row, created = await self.store.set(request.name, request.value, _actor(context))
        return secrets_pb2.SetSecretResponse(secret=secret_info(row), created=created)

    @unary
    async def DeleteSecret(
        self, request: secrets_pb2.DeleteSecretRequest, context: grpc.aio.ServicerContext
    ) -> secrets_pb2.DeleteSecretResponse:
        deleted = await self.store.delete(request.name, _actor(context))
        return secrets_pb2.DeleteSecretResponse(deleted=deleted)

    @unary
    async def ListSecrets(
        self, request: secrets_pb2.ListSecretsRequest, context: grpc.aio.ServicerContext
    ) -> secrets_pb2.ListSecretsResponse:
        rows = await self.store.list()
        return secrets_pb2.ListSecretsResponse(secrets=[secret_info(r) for r in rows])
