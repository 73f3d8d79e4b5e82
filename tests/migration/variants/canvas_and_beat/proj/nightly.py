from celery import chain, chord, group
from celery.schedules import crontab

from .celery import app
from .tasks import add, mul, report_sales

app.conf.beat_schedule = {
    "sales-every-night": {
        "task": "proj.tasks.report_sales",
        "schedule": crontab(hour=2, minute=0),
        "args": ("yesterday",),
    },
}


def totals(x, y):
    return chain(add.s(x, y), mul.s(10)).apply_async()


def monthly_reports(months):
    return group(report_sales.s(month) for month in months)()


def yearly_report(months):
    return chord(report_sales.s(month) for month in months)(report_sales.s())
