from django.urls import path
from notes import views

urlpatterns = [
    path("add", views.add),
    path("count", views.count),
    path("fail", views.fail),
    path("dirty", views.dirty),
    path("conn", views.conn),
    path("isolation", views.isolation),
]
