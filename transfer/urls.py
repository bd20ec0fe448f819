from django.urls import path

from transfer import views

urlpatterns = [
    path("receipts/", views.receipt_list, name="receipt_list"),
    path("jobs/<int:pk>/bundles/", views.bundle_new, name="bundle_new"),
    path("jobs/<int:pk>/bundles/rows/", views.bundle_rows, name="bundle_rows"),
]
