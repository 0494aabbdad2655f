"""The template and schedule calls of `HodeiClient` (hodeictl.client), kept apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from hodei_api.v1 import templates_pb2, templates_pb2_grpc

T = TypeVar("T")


class TemplateCalls:
    """Templates (versions, runs) and their schedules; mixed into `HodeiClient`, which
    provides the stubs and `_call`."""

    _templates: templates_pb2_grpc.TemplateServiceStub
    _schedules: templates_pb2_grpc.ScheduleServiceStub

    if TYPE_CHECKING:
        async def _call(
            self, method: Callable[..., Awaitable[T]], request: Any, *, submitting: bool = False
        ) -> T: ...

    async def create_template(self, spec: templates_pb2.TemplateSpec) -> templates_pb2.Template:
        """A new template (version 1)."""
        request = templates_pb2.CreateTemplateRequest(spec=spec)
        return await self._call(self._templates.CreateTemplate, request)

    async def update_template(self, spec: templates_pb2.TemplateSpec) -> templates_pb2.Template:
        """A new version of the template `spec.name`."""
        request = templates_pb2.UpdateTemplateRequest(spec=spec)
        return await self._call(self._templates.UpdateTemplate, request)

    async def get_template(self, name: str, version: int = 0, runs: int = 0,
                           ) -> templates_pb2.Template:
        """A template (`version` 0: the latest), its stats, schedule and recent runs."""
        request = templates_pb2.GetTemplateRequest(name=name, version=version, runs=runs)
        return await self._call(self._templates.GetTemplate, request)

    async def list_templates(self) -> list[templates_pb2.Template]:
        reply = await self._call(self._templates.ListTemplates,
                                 templates_pb2.ListTemplatesRequest())
        return list(reply.templates)

    async def set_template_enabled(self, name: str, enabled: bool) -> templates_pb2.Template:
        method = self._templates.EnableTemplate if enabled else self._templates.DisableTemplate
        return await self._call(method, templates_pb2.TemplateNameRequest(name=name))

    async def delete_template(self, name: str) -> None:
        await self._call(self._templates.DeleteTemplate,
                         templates_pb2.TemplateNameRequest(name=name))

    async def run_template(
        self, name: str, parameters: dict[str, str], version: int = 0,
        idempotency_key: str = "",
    ) -> templates_pb2.RunTemplateResponse:
        """A run of a template; its parameters are checked by the server."""
        request = templates_pb2.RunTemplateRequest(name=name, parameters=parameters,
                                                   version=version,
                                                   idempotency_key=idempotency_key)
        return await self._call(self._templates.RunTemplate, request)

    async def list_schedules(self) -> list[templates_pb2.ScheduleStatus]:
        reply = await self._call(self._schedules.ListSchedules,
                                 templates_pb2.ListSchedulesRequest())
        return list(reply.schedules)

    async def set_schedule_suspended(self, name: str, suspended: bool,
                                     ) -> templates_pb2.ScheduleStatus:
        method = (self._schedules.SuspendSchedule if suspended
                  else self._schedules.ResumeSchedule)
        return await self._call(method, templates_pb2.ScheduleRequest(template=name))
