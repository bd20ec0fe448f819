from django.urls import path

from plans import views

urlpatterns = [
    path("", views.plan_list, name="plan_list"),
    path("new/", views.plan_new, name="plan_new"),
    path("<int:pk>/", views.plan_detail, name="plan_detail"),
    path("<int:pk>/history/", views.plan_history, name="plan_history"),
    path("<int:pk>/<str:action>/", views.plan_action, name="plan_action"),
]
