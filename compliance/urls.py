"""Pages of the compliance app: the audit trail, an object's timeline, verification, export."""

from __future__ import annotations

from django.urls import path

from compliance import views

app_name = "compliance"
urlpatterns = [
    path("audit/", views.audit_list, name="audit_list"),
    path("audit/verify/", views.audit_verify, name="audit_verify"),
    path("audit/export.csv", views.audit_export, name="audit_export"),
    # object ids are free text (a failed login records the typed user name): allow "/"
    path(
        "audit/timeline/<str:object_type>/<path:object_id>/",
        views.audit_timeline,
        name="audit_timeline",
    ),
]
