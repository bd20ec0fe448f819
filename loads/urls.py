from django.urls import path

from loads import views

urlpatterns = [
    path("", views.load_list, name="load_list"),
    path("rows/", views.load_list_rows, name="load_list_rows"),
    path("new/", views.load_new, name="load_new"),
    path("<int:pk>/", views.load_detail, name="load_detail"),
    path("<int:pk>/live/", views.load_live, name="load_live"),
    path("<int:pk>/cancel/", views.load_cancel, name="load_cancel"),
]
