"""TokenService: API tokens, created and revoked by admins; WhoAmI for anyone with a token."""

from __future__ import annotations

import grpc

from hodei_api.v1 import auth_pb2, auth_pb2_grpc
from hodei_server.api.convert import audit_to_proto, token_to_proto
from hodei_server.api.status import unary
from hodei_server.errors import InvalidSpec
from hodei_server.security import audit
from hodei_server.security.apitokens import Role, TokenStore
from hodei_server.security.authz import principal

MAX_AUDIT_PAGE = 1000
DEFAULT_AUDIT_PAGE = 100

_SERVICE = "/hodei.api.v1.TokenService/"


class TokenServicer(auth_pb2_grpc.TokenServiceServicer):
    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens

    @unary
    async def CreateToken(
        self, request: auth_pb2.CreateTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateTokenResponse:
        row, secret = await self.tokens.create(
            request.name, Role.from_proto(request.role), request.ttl_seconds,
            principal().actor, _SERVICE + "CreateToken",
        )
        return auth_pb2.CreateTokenResponse(token=token_to_proto(row), secret=secret)

    @unary
    async def RevokeToken(
        self, request: auth_pb2.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RevokeTokenResponse:
        row = await self.tokens.revoke(request.name, principal().actor,
                                       _SERVICE + "RevokeToken")
        return auth_pb2.RevokeTokenResponse(token=token_to_proto(row))

    @unary
    async def ListTokens(
        self, request: auth_pb2.ListTokensRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListTokensResponse:
        rows = await self.tokens.list(request.all)
        return auth_pb2.ListTokensResponse(tokens=[token_to_proto(r) for r in rows])

    @unary
    async def WhoAmI(
        self, request: auth_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.WhoAmIResponse:
        who = principal()
        return auth_pb2.WhoAmIResponse(name=who.name, role=who.role.to_proto())

    @unary
    async def ListAudit(
        self, request: auth_pb2.ListAuditRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListAuditResponse:
        if request.limit < 0 or request.after_id < 0:
            raise InvalidSpec("limit and after_id must be >= 0")
        rows = await audit.entries(
            self.tokens.pool, action=request.action[:256], after=request.after_id,
            limit=min(request.limit or DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE),
        )
        return auth_pb2.ListAuditResponse(entries=[audit_to_proto(r) for r in rows])
