import os

from celery import Celery

app = Celery(
    "proj",
    broker=os.environ.get("PROJ_BROKER_URL", "redis://localhost:6379/0"),
    backend=os.environ.get("PROJ_RESULT_BACKEND", "redis://localhost:6379/0"),
    include=["proj.tasks"],
)
app.config_from_object("proj.celeryconfig")


if __name__ == "__main__":
    app.start()
