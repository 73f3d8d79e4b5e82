"""Tasks of a reusable app: ``@shared_task``, no import of the project."""

from django.db import connection

from celeriac import shared_task
from notes.models import Note


@shared_task
def create_note(text: str) -> int:
    return Note.objects.create(text=text).pk


@shared_task
def note_text(pk: int) -> str:
    return Note.objects.get(pk=pk).text


@shared_task
def connection_open() -> bool:
    """Whether a database connection was still open when this task started."""
    return connection.connection is not None
