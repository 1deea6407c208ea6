from django.db import models


class WorkerHeartbeat(models.Model):
    """A worker cluster saying it is alive: its watchdog beats every few seconds, so /healthz
    and recovery can tell a live cluster from one that was killed."""

    holder = models.CharField(max_length=100, unique=True, help_text="host:pid of the cluster.")
    started_at = models.DateTimeField(auto_now_add=True)
    beat_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-beat_at"]

    def __str__(self):
        return self.holder
