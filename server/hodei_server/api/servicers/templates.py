"""TemplateService and ScheduleService: job templates, their runs and their schedules."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from hodei_api.v1 import templates_pb2, templates_pb2_grpc
from hodei_server.api.convert import job_to_proto
from hodei_server.api.convert_templates import schedule_to_proto, template_to_proto
from hodei_server.api.status import unary
from hodei_server.dispatch.dispatcher import Dispatcher
from hodei_server.errors import InvalidSpec, NotFound
from hodei_server.security.authz import principal
from hodei_server.security.secretstore import SecretResolver
from hodei_server.store.jobs import Row
from hodei_server.store.schedules import ScheduleStore
from hodei_server.store.templates import TemplateStore
from hodei_server.templating import (
    MAX_PARAMETERS,
    MAX_RECENT_RUNS,
    resolve_parameters,
    run_spec,
    template_version,
    validate_template,
    validate_template_name,
)
from hodei_server.validation import validate_idempotency_key

log = logging.getLogger(__name__)

DEFAULT_RECENT_RUNS = 10


class TemplateServicer(templates_pb2_grpc.TemplateServiceServicer):
    def __init__(
        self, templates: TemplateStore, schedules: ScheduleStore, dispatcher: Dispatcher,
        secrets: SecretResolver | None = None,
    ) -> None:
        self.templates = templates
        self.schedules = schedules
        self.dispatcher = dispatcher
        self.secrets = secrets

    async def _check_secrets(self, spec: templates_pb2.TemplateSpec) -> None:
        if spec.job.secrets:
            if self.secrets is None:
                raise InvalidSpec("this server has no secret backends")
            await self.secrets.check_exist([ref.name for ref in spec.job.secrets])

    async def _schedule_of(self, name: str) -> Row | None:
        try:
            return await self.schedules.get(name)
        except NotFound:
            return None

    async def _full(self, name: str, version: int | None = None, runs: int = 0,
                    ) -> templates_pb2.Template:
        row = await self.templates.get(name, version)
        stats = await self.templates.stats(row["id"])
        recent = await self.templates.recent_runs(row["id"], runs) if runs else []
        return template_to_proto(row, stats, await self._schedule_of(name), recent)

    @unary
    async def CreateTemplate(
        self, request: templates_pb2.CreateTemplateRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb2.Template:
        validate_template(request.spec)
        await self._check_secrets(request.spec)
        version = template_version(request.spec, await self.schedules.now())
        await self.templates.create(version, principal().actor)
        log.info("template %s created", request.spec.name)
        return await self._full(request.spec.name)

    @unary
    async def UpdateTemplate(
        self, request: templates_pb2.UpdateTemplateRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb2.Template:
        validate_template(request.spec)
        await self._check_secrets(request.spec)
        version = template_version(request.spec, await self.schedules.now())
        row = await self.templates.update(version, principal().actor)
        log.info("template %s updated to version %d", request.spec.name, row["version"])
        return await self._full(request.spec.name)

    @unary
    async def GetTemplate(
        self, request: templates_pb2.GetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb2.Template:
        validate_template_name(request.name)
        if request.version < 0:
            raise InvalidSpec("version must be >= 1 (0: the latest)")
        if not 0 <= request.runs <= MAX_RECENT_RUNS:
            raise InvalidSpec(f"runs must be between 0 and {MAX_RECENT_RUNS}")
        return await self._full(request.name, request.version or None,
                                request.runs or DEFAULT_RECENT_RUNS)

    @unary
    async def ListTemplates(
        self, request: templates_pb2.ListTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb2.ListTemplatesResponse:
        schedules = {row["name"]: row for row in await self.schedules.list_schedules()}
        reply = templates_pb2.ListTemplatesResponse()
        for row in await self.templates.list_templates():
            stats = await self.templates.stats(row["id"])
            reply.templates.append(template_to_proto(row, stats, schedules.get(row["name"])))
        return reply

    async def _set_disabled(self, name: str, disabled: bool) -> templates_pb2.Template:
        validate_template_name(name)
        await self.templates.set_disabled(name, disabled, principal().actor)
        log.info("template %s %s", name, "disabled" if disabled else "enabled")
        return await self._full(name)

    @unary
    async def DisableTemplate(
        self, request: templates_pb2.TemplateNameRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb2.Template:
        return await self._set_disabled(request.name, True)

    @unary
    async def EnableTemplate(
        self, request: templates_pb2.TemplateNameRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb2.Template:
        return await self._set_disabled(request.name, False)

    @unary
    async def DeleteTemplate(
        self, request: templates_pb2.TemplateNameRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb2.DeleteTemplateResponse:
        validate_template_name(request.name)
        await self.templates.delete(request.name, principal().actor)
        log.info("template %s deleted", request.name)
        return templates_pb2.DeleteTemplateResponse(deleted=True)

    @unary
    async def RunTemplate(
        self, request: templates_pb2.RunTemplateRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb2.RunTemplateResponse:
        validate_template_name(request.name)
        validate_idempotency_key(request.idempotency_key)
        if request.version < 0:
            raise InvalidSpec("version must be >= 1 (0: the latest)")
        if len(request.parameters) > MAX_PARAMETERS:
            raise InvalidSpec(f"a run gives at most {MAX_PARAMETERS} parameters")
        version = request.version or None
        given = dict(request.parameters)
        current = templates_pb2.TemplateSpec.FromString(
            (await self.templates.get(request.name, version))["spec"])
        resolve_parameters(current, given)  # refuse bad parameters before anything else
        await self._check_secrets(current)

        def build(row: dict[str, Any]) -> tuple[Any, dict[str, str]]:
            spec = templates_pb2.TemplateSpec.FromString(row["spec"])
            values = resolve_parameters(spec, given)
            return run_spec(spec, values), values

        who = principal()
        row, created = await self.templates.run(request.name, version, build,
                                                request.idempotency_key, who.actor, who.name)
        if created:
            self.dispatcher.wake()
            log.info("template %s: run %s", request.name, row["id"])
        return templates_pb2.RunTemplateResponse(job=job_to_proto(row), created=created)


class ScheduleServicer(templates_pb2_grpc.ScheduleServiceServicer):
    def __init__(self, schedules: ScheduleStore) -> None:
        self.schedules = schedules

    @unary
    async def ListSchedules(
        self, request: templates_pb2.ListSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb2.ListSchedulesResponse:
        rows = await self.schedules.list_schedules()
        return templates_pb2.ListSchedulesResponse(
            schedules=[schedule_to_proto(row) for row in rows])

    async def _set(self, name: str, suspended: bool) -> templates_pb2.ScheduleStatus:
        validate_template_name(name)
        row = await self.schedules.set_suspended(name, suspended, principal().actor)
        log.info("schedule of template %s %s", name, "suspended" if suspended else "resumed")
        return schedule_to_proto(row)

    @unary
    async def SuspendSchedule(
        self, request: templates_pb2.ScheduleRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb2.ScheduleStatus:
        return await self._set(request.template, True)

    @unary
    async def ResumeSchedule(
        self, request: templates_pb2.ScheduleRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb2.ScheduleStatus:
        return await self._set(request.template, False)
