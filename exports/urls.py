from django.urls import path

from exports import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
]
