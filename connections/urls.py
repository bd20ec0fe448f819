from django.urls import path

from connections import views

urlpatterns = [
    path("", views.connection_list, name="connection_list"),
    path("new/", views.connection_create, name="connection_create"),
    path("<int:pk>/edit/", views.connection_edit, name="connection_edit"),
    path("<int:pk>/delete/", views.connection_delete, name="connection_delete"),
    path("<int:pk>/test/", views.connection_test, name="connection_test"),
    path("tables/", views.connection_tables, name="connection_tables"),
]
