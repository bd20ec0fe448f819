from django.urls import path

from exports import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("running/", views.dashboard_running, name="dashboard_running"),
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/rows/", views.job_list_rows, name="job_list_rows"),
    path("jobs/new/", views.job_new, name="job_new"),
    path("jobs/new/filter-check/", views.job_new_filter_check, name="job_new_filter_check"),
    # The new-export page's pickers (named for what they list, as before they moved here).
    path("jobs/new/tables/", views.connection_tables, name="connection_tables"),
    path("jobs/new/columns/", views.connection_columns, name="connection_columns"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("jobs/<int:pk>/live/", views.job_live, name="job_live"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<int:pk>/retry/", views.job_retry, name="job_retry"),
    path("jobs/<int:pk>/log/", views.job_log, name="job_log"),
    path("jobs/<int:pk>/log/lines/", views.job_log_lines, name="job_log_lines"),
    path("jobs/<int:pk>/log/download/", views.job_log_download, name="job_log_download"),
    path("jobs/<int:pk>/files/<path:path>", views.job_file, name="job_file"),
]
