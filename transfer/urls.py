from django.urls import path

from transfer import views

urlpatterns = [
    path("receipts/", views.receipt_list, name="receipt_list"),
]
