from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from perfdash.dashboard import views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("nodes/<path:node>/", views.overview, name="node"),
    path("agents/<path:agent>/", views.overview, name="agent"),
    path("tools/", views.tools, name="tools"),
    path("capacity/", views.capacity, name="capacity"),
    path("compare/", views.compare, name="compare"),
    path("slos/", views.slos, name="slos"),
    path("slos/data", views.slos_data, name="slos-data"),
    path("capacity/refit", views.refit, name="capacity-refit"),
    path("explore/", views.explore_page, name="explore"),
    path("data/explore", views.explore_data, name="explore-data"),
    path("boards/", views.board_list, name="boards"),
    path("boards/<slug:slug>/", views.board_page, name="board"),
    path("data/board/<slug:slug>", views.board_data, name="board-data"),
    path("data/<str:page>", views.data, name="data"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
