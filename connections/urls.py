from django.urls import path

from connections import views

urlpatterns = [
    path("", views.connection_list, name="connection_list"),
    path("new/", views.connection_create, name="connection_create"),
    path("new/test/", views.connection_test_typed, name="connection_test_typed"),
    path("<int:pk>/", views.connection_detail, name="connection_detail"),
    path("<int:pk>/discovery/", views.connection_discovery, name="connection_discovery"),
    path("<int:pk>/edit/", views.connection_edit, name="connection_edit"),
    path("<int:pk>/edit/test/", views.connection_test_typed, name="connection_test_typed"),
    path("<int:pk>/delete/", views.connection_delete, name="connection_delete"),
    path("<int:pk>/test/", views.connection_test, name="connection_test"),
    path("queries/", views.query_list, name="query_list"),
    path("queries/new/", views.query_create, name="query_create"),
    path("queries/<int:pk>/edit/", views.query_edit, name="query_edit"),
    path("queries/<int:pk>/delete/", views.query_delete, name="query_delete"),
    path("queries/preview/", views.query_preview, name="query_preview"),
]
