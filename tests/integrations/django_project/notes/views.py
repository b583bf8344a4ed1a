from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse

from .models import Note


def _db(request: HttpRequest) -> str:
    return request.GET.get("db", "default")


def add(request: HttpRequest) -> HttpResponse:
    note = Note.objects.using(_db(request)).create(text=request.GET.get("text", "x"))
    return HttpResponse(str(note.pk))


def count(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(Note.objects.using(_db(request)).count()))


def fail(request: HttpRequest) -> HttpResponse:
    with transaction.atomic(using=_db(request)):
        Note.objects.using(_db(request)).create(text="fail")
        raise RuntimeError("the view failed after writing")


def dirty(request: HttpRequest) -> HttpResponse:
    """Leaves a transaction open: autocommit switched off, a row written, no commit."""
    transaction.set_autocommit(False, using=_db(request))
    Note.objects.using(_db(request)).create(text="dirty")
    return HttpResponse("left open")


def conn(request: HttpRequest) -> HttpResponse:
    with connections[_db(request)].cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        return HttpResponse(str(cur.fetchone()[0]))


def isolation(request: HttpRequest) -> HttpResponse:
    with connections[_db(request)].cursor() as cur:
        cur.execute("SELECT @@tx_isolation, @@sql_auto_is_null")
        level, auto_is_null = cur.fetchone()
        return HttpResponse(f"{level} {auto_is_null}")
