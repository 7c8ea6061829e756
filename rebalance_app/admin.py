"""Admin building blocks shared by every app: audited edits, read-only and retained records.

``AuditedModelAdmin`` writes an audit event with before/after values for every add, change
and delete made through the admin, inside the admin's own transaction, so an admin edit is as
traceable as one made through a service. ``ReadOnlyModelAdmin`` is for records that only the
system writes (audit events, runs, results, orders: the workflow services own them), and
``RetainedModelAdmin`` removes the delete path from books-of-record models (Advisers Act Rule
204-2 asks for five years of records).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db import transaction

from compliance.services.audit import audit_diff, audit_record, audit_snapshot

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet
    from django.forms import ModelForm
    from django.http import HttpRequest, HttpResponse

admin.site.site_header = "Rebalancing service administration"
admin.site.site_title = "Rebalancing admin"

# Admin actions recorded in the audit trail: "<model>.admin_add", ".admin_change", ".admin_delete".
ADMIN_ADD = "admin_add"
ADMIN_CHANGE = "admin_change"
ADMIN_DELETE = "admin_delete"
_PENDING = "_admin_audit_before"


def admin_audit_action(model: type[Model], verb: str) -> str:
    return f"{model._meta.model_name}.{verb}"


class AuditedModelAdmin(admin.ModelAdmin):
    """A ModelAdmin whose adds, changes and deletes each write an audit event.

    The "before" picture is read from the database when the form is saved, the "after" one
    once the many-to-many fields are saved too (``save_related``), so both include them.
    Fields named in ``audit_exclude_fields`` are left out (a service audits them itself).
    """

    audit_exclude_fields: tuple[str, ...] = ()
    # Set once when the row is made; the admin's split date/time widget would also drop its
    # microseconds on every save, which would read as a change.
    never_edited_fields: tuple[str, ...] = ("created_at",)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        names = {f.name for f in self.model._meta.fields}
        return fields + [n for n in self.never_edited_fields if n in names and n not in fields]

    def audit_picture(self, obj: Model) -> dict[str, Any]:
        picture = audit_snapshot(obj)
        for field in obj._meta.many_to_many:
            # names, not ids: "groups": ["PM", "Team A"] is what a reviewer needs to read
            picture[field.name] = sorted(str(related) for related in getattr(obj, field.name).all())
        for name in self.audit_exclude_fields:
            picture.pop(name, None)
        return picture

    def save_model(self, request: HttpRequest, obj: Model, form: ModelForm, change: bool) -> None:
        before = None
        if change:
            before = self.audit_picture(self.model._default_manager.get(pk=obj.pk))
        pending = request.__dict__.setdefault(_PENDING, {})
        pending[id(obj)] = before
        super().save_model(request, obj, form, change)

    def save_related(
        self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool
    ) -> None:
        with transaction.atomic():
            super().save_related(request, form, formsets, change)
            obj = form.instance
            before = request.__dict__.get(_PENDING, {}).pop(id(obj), None)
            after = self.audit_picture(obj)
            if change:
                before, after = audit_diff(before, after)
                if not after:
                    return
            audit_record(
                actor=request.user,
                action=admin_audit_action(self.model, ADMIN_CHANGE if change else ADMIN_ADD),
                obj=obj,
                before=before,
                after=after,
            )

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        with transaction.atomic():
            self._audit_delete(request, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset:
                self._audit_delete(request, obj)
            super().delete_queryset(request, queryset)

    def _audit_delete(self, request: HttpRequest, obj: Model) -> None:
        audit_record(
            actor=request.user,
            action=admin_audit_action(self.model, ADMIN_DELETE),
            object_type=obj._meta.label_lower,
            object_id=obj.pk,
            before=self.audit_picture(obj),
            after=None,
        )


class RetainedModelAdmin(AuditedModelAdmin):
    """Audited edits, and no delete: a record the firm must keep (Rule 204-2)."""

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """View only: the system writes these rows, through services that audit them."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """An inline that lists related rows without letting them be added, edited or removed."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


# ---------------------------------------------------------------------------
# Users and groups: group membership is how roles and PM teams are granted (DESIGN 8 asks for
# every permission grant on the trail). Password hashes never go into the trail.
# ---------------------------------------------------------------------------


class AuditedUserAdmin(AuditedModelAdmin, UserAdmin):
    audit_exclude_fields = ("password", "last_login")
    never_edited_fields = ("date_joined", "last_login")

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        # The password form saves outside save_model; record that (never what) it changed.
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and response.status_code == 302:
                audit_record(
                    actor=request.user,
                    action=admin_audit_action(self.model, "admin_password_change"),
                    object_type=self.model._meta.label_lower,
                    object_id=id,
                )
        return response


class AuditedGroupAdmin(AuditedModelAdmin, GroupAdmin):
    pass


for _model, _admin_class in ((get_user_model(), AuditedUserAdmin), (Group, AuditedGroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin_class)
