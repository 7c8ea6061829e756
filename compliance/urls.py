"""Pages of the compliance app: the audit trail, an object's timeline, verification, export."""

from __future__ import annotations

from django.urls import path

from compliance import views, views_rules

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
    # Restricted list and rules (compliance/views_rules.py)
    path("restrictions/", views_rules.restriction_list_view, name="restriction_list"),
    path("restrictions/new/", views_rules.restriction_form_view, name="restriction_create"),
    path("restrictions/<int:pk>/edit/", views_rules.restriction_form_view, name="restriction_edit"),
    path("rules/", views_rules.rule_list_view, name="rule_list"),
    path("rules/new/", views_rules.rule_form_view, name="rule_create"),
    path("rules/<int:pk>/edit/", views_rules.rule_form_view, name="rule_edit"),
]
