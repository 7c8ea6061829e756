"""Project-level pages: login and logout, the home page, and the health endpoint."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from rebalance_app.health import health_report


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


@login_required
def home(request: HttpRequest) -> HttpResponse:
    from rebalance_app.selectors import home_summary

    return render(request, "home.html", {"summary": home_summary(user=request.user)})


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """Database, Redis and Celery worker status; 200 when the database and Redis answer."""
    report = health_report()
    status = 200 if report["database"]["ok"] and report["redis"]["ok"] else 503
    return JsonResponse(report, status=status)
