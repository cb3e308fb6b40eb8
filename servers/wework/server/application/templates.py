"""Template use cases: create, get, list, update (field mask + etag), delete, RenderPreview.

Visibility: a private template (is_public=false) exists only for its creator; for everybody
else in the tenant it is NOT_FOUND, exactly like another tenant's template. A public one is
visible to and usable by the whole tenant; only its creator may change or delete it.
usage_count/last_used_time are kept by SendMessage (and batch tasks) in the sending transaction.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from wework.domain.access import Principal
from wework.domain.errors import FieldViolation, InvalidArgument, NotFound
from wework.domain.identity import check_etag, validate_request_id
from wework.domain.messages import MessageType, Template, render, validate_template
from wework.domain.update_mask import check_update_mask
from wework.persistence.ids import new_id
from wework.persistence.pagination import normalize_page_size
from wework.server.application.context import AppContext, require_id
from wework.server.application.media import media_references

MESSAGE_DB = "message"
CREATE_OPERATION = "CreateTemplate"
MUTABLE_FIELDS = frozenset({"template_name", "category", "description", "template_content", "variables",
                            "preview_data", "is_public", "is_active", "tags"})
MAX_TAGS, MAX_TAG = 20, 50


def _check_extras(t: Template, prefix: str = "template") -> list[FieldViolation]:
    out = []
    if t.category and len(t.category) > 50:
        out.append(FieldViolation(f"{prefix}.category", "category is at most 50 characters"))
    if t.description and len(t.description) > 500:
        out.append(FieldViolation(f"{prefix}.description", "description is at most 500 characters"))
    if len(t.tags) > MAX_TAGS or any(not tag or len(tag) > MAX_TAG for tag in t.tags):
        out.append(FieldViolation(f"{prefix}.tags", f"at most {MAX_TAGS} tags of 1-{MAX_TAG} characters"))
    return out


def etag(t: Template) -> str:
    return f"v{t.version}"


class TemplateUseCases:
    def __init__(self, ctx: AppContext, media: Any = None) -> None:
        self._ctx = ctx
        # MediaUseCases: a media_id in the template must name media of the tenant.
        self._media = media

    async def _check_media(self, tenant_id: str, t: Template) -> None:
        if self._media is not None:
            await self._media.check_references(tenant_id, media_references(
                t.template_type.value, t.template_content, "template.template_content.media_id"))

    async def create_template(self, principal: Principal, t: Template, request_id: str) -> Template:
        tenant_id = principal.require_tenant()
        validate_request_id(request_id)
        violations = validate_template(t.template_name, t.template_type, t.template_content, t.variables)
        violations += _check_extras(t)
        if violations:
            raise InvalidArgument(violations)
        await self._check_media(tenant_id, t)
        now = self._ctx.clock()
        # New templates are active (proto3 cannot tell an unset is_active from false); deactivate
        # with UpdateTemplate.
        t = replace(t, id=new_id(), tenant_id=tenant_id, creator_id=principal.subject_id, created_at=now,
                    updated_at=now, version=1, usage_count=0, last_used_time=None, is_active=True)
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
            keys = uow.messages
            if request_id:
                done = await keys.get_idempotent(tenant_id, CREATE_OPERATION, request_id)
                if done is not None:
                    existing = await uow.templates.get(tenant_id, done)
                    if existing is not None:
                        return existing
                await keys.put_idempotent(tenant_id, CREATE_OPERATION, request_id, t.id, now)
            await uow.templates.add(t)
        return t

    async def get_template(self, principal: Principal, template_id: str) -> Template:
        tenant_id = principal.require_tenant()
        require_id(template_id, "id")
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            found = await uow.templates.get(tenant_id, template_id)
        if found is None or not found.visible_to(principal.subject_id):
            raise NotFound("template", template_id)
        return found

    async def list_templates(self, principal: Principal, *, category: str, tag: str,
                             template_type: MessageType | None, is_active: bool | None, page_size: int,
                             page_token: str) -> tuple[list[Template], str]:
        tenant_id = principal.require_tenant()
        limit = normalize_page_size(page_size)
        after = self._ctx.page_tokens.after_id(page_token, "templates", tenant_id)
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            rows = await uow.templates.list_page(
                tenant_id, principal.subject_id, category=category or None, tag=tag or None,
                template_type=template_type, is_active=is_active, after=after, limit=limit + 1)
        return self._ctx.page_tokens.id_page(rows, limit, "templates", tenant_id)

    async def update_template(self, principal: Principal, changes: Template, paths: list[str],
                              given_etag: str) -> Template:
        tenant_id = principal.require_tenant()
        require_id(changes.id, "template.id")
        check_update_mask(paths, MUTABLE_FIELDS)
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
            repo = uow.templates
            current = await repo.get(tenant_id, changes.id, for_update=True)
            if current is None or not current.visible_to(principal.subject_id):
                raise NotFound("template", changes.id)
            if current.creator_id != principal.subject_id and not principal.is_platform_admin:
                # Shared, not co-owned: a public template is changed by its creator only.
                raise NotFound("template", changes.id)
            check_etag(given_etag, current.version, f"templates/{current.id}")
            updated = replace(current, **{p: getattr(changes, p) for p in paths}, updated_at=self._ctx.clock())
            violations = validate_template(updated.template_name, updated.template_type,
                                           updated.template_content, updated.variables)
            violations += _check_extras(updated)
            if violations:
                raise InvalidArgument(violations)
            await self._check_media(tenant_id, updated)
            saved = await repo.save(updated)
        return saved

    async def delete_template(self, principal: Principal, template_id: str) -> None:
        tenant_id = principal.require_tenant()
        require_id(template_id, "id")
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
            repo = uow.templates
            current = await repo.get(tenant_id, template_id, for_update=True)
            if (current is None or not current.visible_to(principal.subject_id)
                    or (current.creator_id != principal.subject_id and not principal.is_platform_admin)):
                raise NotFound("template", template_id)
            await repo.delete(tenant_id, template_id)

    async def render_preview(self, principal: Principal, template_id: str,
                             variables: dict[str, Any] | None) -> tuple[MessageType, dict[str, Any]]:
        t = await self.get_template(principal, template_id)
        values = variables if variables is not None else (t.preview_data or {})
        return t.template_type, render(t.template_type, t.template_content, t.variables, values)
